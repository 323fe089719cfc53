import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { errorCodes } from 'fastify'
import { errorReplies, hostRefused } from '../src/error-replies.js'
import { BrokerUnavailableError, DataTooDeepError, ForbiddenError, PublishOverLimitError, RateLimitedError, RedisFullError, TokenInvalidError, TokenMissingError } from '../src/errors.js'
import { MAX_DATA_DEPTH, nestsDeeperThan } from '../src/json-depth.js'
import { MAX_TOPICS_PER_EVENT, PublishBody, PublishHeaders, PublishReply } from '../src/schemas.js'
import { topicCountLimit, validationFormatter } from './validation.js'
import { uniqueTopics } from '../src/topics.js'
import type { PublishInput, PublishResult } from '../src/transport/transport.js'

/** POST /v1/events: publish one JSON event to one or more topics. */
const events: FastifyPluginAsyncTypebox = async (fastify) => {
  // An event to N topics costs N topic-events; a repeated name is published once, so it counts once.
  const quota = fastify.publishQuota.routeHooks((body) => {
    const topic = (body as { topic?: unknown } | null)?.topic
    return Array.isArray(topic) ? new Set(topic).size : 1
  })

  fastify.post('/v1/events', {
    config: { publish: true },
    onRequest: quota.onRequest,
    // Before the schema, cheapest first: the count of topic names, then the rest of the rate limit's charge.
    preValidation: [topicCountLimit(MAX_TOPICS_PER_EVENT), quota.preValidation],
    onResponse: (_request, reply, done) => {
      fastify.metrics.publishDuration(reply.elapsedTime / 1000)
      done()
    },
    schema: {
      summary: 'Publish an event',
      operationId: 'publishEvent',
      description: 'Stores one JSON event and sends it to every subscriber of its topics, on every instance. ' +
        'Never a 2xx for an event that was not stored. With `HERALD_JWT_SECRET` or `HERALD_JWT_PUBLIC_KEY` set, ' +
        'it needs a bearer token whose `herald.publish` patterns cover every topic; without either key ' +
        '(open development mode) it needs none, and answers loopback hosts only.',
      tags: ['publish'],
      security: [{ bearerToken: [] }],
      headers: PublishHeaders,
      body: PublishBody,
      response: {
        202: PublishReply,
        ...errorReplies([
          { error: new errorCodes.FST_ERR_VALIDATION("body must have required property 'data'"), when: 'a missing, unknown or ill-typed field: a bad topic name, more than 64 topics, a `type` with a control character or starting with `herald.`, a bad `retry` or idempotency key; the message names the field and what it expects' },
          { error: new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY(), when: 'the body is not valid JSON' },
          { error: new errorCodes.FST_ERR_CTP_EMPTY_JSON_BODY(), when: 'the body is empty' },
          { error: new DataTooDeepError('body/data', MAX_DATA_DEPTH), when: `\`data\` nests deeper than ${MAX_DATA_DEPTH} levels` },
          { error: new TokenMissingError('publishing needs a token: send Authorization: Bearer <jwt>'), when: 'a key is configured and the request has no bearer token' },
          { error: new TokenInvalidError('the token has expired'), when: 'the token does not verify: signature, algorithm, expiry, `nbf`, issuer, audience, or a malformed `herald` claim' },
          { error: new ForbiddenError('this token may not publish to topic "billing"'), when: 'the token\'s `herald.publish` patterns do not cover a topic (named in the message)' },
          hostRefused,
          { error: new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE(), when: 'the body is larger than `HERALD_MAX_BODY_BYTES`' },
          { error: new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE(), when: 'the content type is not `application/json`' },
          { error: new RateLimitedError(600, 'minute', 42), when: 'more than `HERALD_RATE_LIMIT_PER_MINUTE` topic-events (an event to N topics counts N) in a minute from one token subject (or one address without a verified token), on this instance' },
          { error: new PublishOverLimitError(64, 50), when: 'the publish alone names more topics than `HERALD_RATE_LIMIT_PER_MINUTE`: it never fits, so there is no `Retry-After`' },
          { error: new BrokerUnavailableError('Redis is unreachable; the event was not stored'), when: 'Redis is unreachable: the event was not stored; or Redis did not answer within `HERALD_REDIS_COMMAND_TIMEOUT_MS`: it may be stored, so retry with the same idempotency key' },
          { error: new RedisFullError('Redis is out of memory (used memory above its maxmemory, and its policy evicts nothing): the event was not stored; history expires, or raise maxmemory'), when: 'Redis is at its `maxmemory` under `noeviction` and refused the write: the event was not stored' }
        ])
      }
    },
    schemaErrorFormatter: validationFormatter({ body: PublishBody, headers: PublishHeaders })
  }, async (request, reply) => {
    const body = request.body
    if (nestsDeeperThan(body.data, MAX_DATA_DEPTH)) {
      throw new DataTooDeepError('body/data', MAX_DATA_DEPTH)
    }
    const topics = uniqueTopics(typeof body.topic === 'string' ? [body.topic] : body.topic)
    fastify.authorizer.authorizePublish(fastify.bearerToken(request), topics)
    const input: PublishInput = {
      topics,
      // Encoded once here; every subscriber on every instance gets these same bytes.
      data: JSON.stringify(body.data)
    }
    if (body.type !== undefined) input.type = body.type
    if (body.retry !== undefined) input.retry = body.retry
    const idempotencyKey = body.idempotencyKey ?? request.headers['idempotency-key']
    if (idempotencyKey !== undefined) input.idempotencyKey = idempotencyKey

    const published = await fastify.hub.publish(input)
    fastify.metrics.published(published.duplicate ? 'duplicate' : 'stored')
    return reply.code(202).send(publishReply(published))
  })
}

/** The reply to a publish: each topic's id, and `id` alone when there is one topic (the id its streams carry). */
export function publishReply (published: PublishResult): { id?: string, ids: string[], topics: string[], duplicate: boolean } {
  return published.topics.length === 1 ? { id: published.ids[0] as string, ...published } : published
}

export default events
