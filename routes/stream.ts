import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { BrokerUnavailableError, StreamsPerAddressError, StreamsPerSubjectError, TooManyConnectionsError, TooManyTopicsError } from '../src/errors.js'
import { ErrorReply, StreamHeaders, StreamQuery } from '../src/schemas.js'
import { StreamQuota } from '../src/stream-quota.js'
import { uniqueTopics } from '../src/topics.js'
import { validationFormatter } from './validation.js'

/**
 * GET /v1/stream?topic=a&topic=b: a Server-Sent Events stream of the topics' events.
 * Bad input is a 400 and a refused token a 401/403 (the client must change something); a temporary refusal
 * (Redis not ready, the instance or the client at its cap) is thrown as usual and answered in band as a short
 * 200 stream that EventSource retries (route config `eventStream`, see the error handler).
 */
const stream: FastifyPluginAsyncTypebox = async (fastify) => {
  const { maxTopicsPerStream, maxConnections } = fastify.config
  const perAddress = new StreamQuota(fastify.config.maxStreamsPerAddress)
  const perSubject = new StreamQuota(fastify.config.maxStreamsPerSubject)

  fastify.get('/v1/stream', {
    config: { eventStream: true },
    schema: {
      summary: 'Subscribe to topics (text/event-stream)',
      querystring: StreamQuery,
      headers: StreamHeaders,
      response: { '4xx': ErrorReply }
    },
    schemaErrorFormatter: validationFormatter({ querystring: StreamQuery, headers: StreamHeaders })
  }, async (request, reply) => {
    const query = request.query
    const topics = uniqueTopics(typeof query.topic === 'string' ? [query.topic] : query.topic)
    if (topics.length > maxTopicsPerStream) throw new TooManyTopicsError(maxTopicsPerStream, topics.length)
    // Before any stream byte: a refused topic gets a plain 401/403 with a reason.
    const token = fastify.subscriberToken(request)
    const grant = fastify.authorizer.authorizeSubscribe(token, topics)
    if (fastify.hub.health().status !== 'ok') throw new BrokerUnavailableError('Redis is not ready; retry shortly')
    if (fastify.hub.streamCount >= maxConnections) throw new TooManyConnectionsError(maxConnections)
    // request.ip honours HERALD_TRUST_PROXY; only a verified subject has a budget of its own.
    const address = request.ip
    const subject = grant.subject ?? fastify.authorizer.verifiedSubject(token)
    if (!perAddress.acquire(address)) throw new StreamsPerAddressError(perAddress.limit)
    if (subject !== undefined && !perSubject.acquire(subject)) {
      perAddress.release(address)
      throw new StreamsPerSubjectError(perSubject.limit)
    }
    const header = request.headers['last-event-id']
    const lastEventId = typeof header === 'string' && header !== '' ? header : query.lastEventId
    const subscription = fastify.hub.subscribe(topics, lastEventId, { envelope: query.envelope === '1' })
    subscription.on('close', () => {
      perAddress.release(address)
      if (subject !== undefined) perSubject.release(subject)
    })
    return reply.eventStream(subscription, { expiresAt: grant.expiresAt })
  })
}

export default stream
