import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { errorCodes } from 'fastify'
import { errorReplies, hostRefused } from '../src/error-replies.js'
import {
  BrokerUnavailableError, DrainingError, ForbiddenError, StreamsPerAddressError, StreamsPerSubjectError, TokenInvalidError,
  TokenMissingError, TooManyConnectionsError, TooManyTopicsError
} from '../src/errors.js'
import { EventStreamReply, MAX_STREAM_ID_LENGTH, StreamHeaders, StreamQuery } from '../src/schemas.js'
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
      operationId: 'subscribe',
      description: 'A Server-Sent Events stream of the topics\' events, for `new EventSource(url)`. Public topics need ' +
        'no token; a private one (`HERALD_PRIVATE_TOPICS`) needs a token whose `herald.subscribe` patterns cover it, ' +
        'from the `Authorization` header, the token cookie, or `access_token` (EventSource cannot set headers). ' +
        'Refused input or tokens are plain 4xx before any stream byte; temporary refusals are in band (see 200).',
      tags: ['subscribe'],
      // Public topics need no token: the empty requirement says so.
      security: [{}, { bearerToken: [] }, { tokenCookie: [] }, { accessToken: [] }],
      querystring: StreamQuery,
      headers: StreamHeaders,
      response: {
        200: EventStreamReply,
        ...errorReplies([
          { error: new errorCodes.FST_ERR_VALIDATION('querystring must have required property \'topic\''), when: `no topic, a bad topic name, or a \`Last-Event-ID\`/\`lastEventId\` longer than ${MAX_STREAM_ID_LENGTH} characters (the longest id of a stream of the most topics); the message names the parameter` },
          { error: new TooManyTopicsError(fastify.config.maxTopicsPerStream, fastify.config.maxTopicsPerStream + 1), when: 'more topics than `HERALD_MAX_TOPICS_PER_STREAM`' },
          { error: new TokenMissingError('topic "users/42/inbox" is private: send a token (Authorization: Bearer, the token cookie, or access_token)'), when: 'a private topic, and no token' },
          { error: new TokenInvalidError('the token has expired'), when: 'a private topic, and the token does not verify' },
          { error: new ForbiddenError('this token may not subscribe to topic "users/43/inbox"'), when: 'the token\'s `herald.subscribe` patterns do not cover a private topic (named in the message)' },
          hostRefused
        ])
      }
    },
    schemaErrorFormatter: validationFormatter({ querystring: StreamQuery, headers: StreamHeaders })
  }, async (request, reply) => {
    const query = request.query
    const topics = uniqueTopics(typeof query.topic === 'string' ? [query.topic] : query.topic)
    if (topics.length > maxTopicsPerStream) throw new TooManyTopicsError(maxTopicsPerStream, topics.length)
    // Before any stream byte: a refused topic gets a plain 401/403 with a reason.
    const token = fastify.subscriberToken(request)
    const grant = fastify.authorizer.authorizeSubscribe(token, topics)
    if (fastify.hub.draining) throw new DrainingError()
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
