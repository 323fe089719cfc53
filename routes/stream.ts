import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { TooManyConnectionsError, TooManyTopicsError } from '../src/errors.js'
import { ErrorReply, StreamQuery } from '../src/schemas.js'
import { uniqueTopics } from '../src/topics.js'
import { validationFormatter } from './validation.js'

/** GET /v1/stream?topic=a&topic=b: a Server-Sent Events stream of the topics' events. */
const stream: FastifyPluginAsyncTypebox = async (fastify) => {
  const { maxTopicsPerStream, maxConnections } = fastify.config

  fastify.get('/v1/stream', {
    schema: {
      summary: 'Subscribe to topics (text/event-stream)',
      querystring: StreamQuery,
      response: { '4xx': ErrorReply }
    },
    schemaErrorFormatter: validationFormatter({ querystring: StreamQuery })
  }, async (request, reply) => {
    const query = request.query
    const topics = uniqueTopics(typeof query.topic === 'string' ? [query.topic] : query.topic)
    if (topics.length > maxTopicsPerStream) throw new TooManyTopicsError(maxTopicsPerStream, topics.length)
    if (fastify.hub.streamCount >= maxConnections) throw new TooManyConnectionsError(maxConnections)
    // Before any stream byte: a refused topic gets a plain 401/403 with a reason.
    const grant = fastify.authorizer.authorizeSubscribe(fastify.subscriberToken(request), topics)
    const header = request.headers['last-event-id']
    const lastEventId = typeof header === 'string' && header !== '' ? header : query.lastEventId
    return reply.eventStream(fastify.hub.subscribe(topics, lastEventId), { expiresAt: grant.expiresAt })
  })
}

export default stream
