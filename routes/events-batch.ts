import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { errorCodes, type FastifyReply } from 'fastify'
import { STATUS_CODES } from 'node:http'
import { Type, type TObject } from 'typebox'
import { errorReplies, hostRefused } from '../src/error-replies.js'
import { BatchTooLargeError, BrokerUnavailableError, DataTooDeepError, ForbiddenError, PublishOverLimitError, RateLimitedError, RedisFullError, TokenInvalidError, TokenMissingError } from '../src/errors.js'
import { MAX_DATA_DEPTH, nestsDeeperThan } from '../src/json-depth.js'
import { describeOutcomes, type EventOutcome } from '../src/publish-batch.js'
import { compileBatchValidator } from '../src/batch-validator.js'
import { BatchEventOutcome, ErrorReply, MAX_TOPICS_PER_EVENT, PublishBatchReply, publishBatchBody } from '../src/schemas.js'
import { uniqueTopics } from '../src/topics.js'
import type { PublishInput, PublishResult } from '../src/transport/transport.js'
import { validationFormatter } from './validation.js'

/** The 503's example: an event stored on one of its two topics, and one never tried on its topic. */
const UNAVAILABLE_EXAMPLE_MESSAGE = 'event 1 on topic "dashboard": Redis is unreachable; the event was not stored. 1 of 3 events were stored, 1 in part, 1 was not: retry the batch with the same idempotency keys'
const UNAVAILABLE_EXAMPLE_EVENTS: EventOutcome[] = [
  { status: 'stored', ids: ['m5x8k2qz3f-17'], topics: ['users/17'], duplicate: false },
  { status: 'partial', byTopic: [{ topic: 'orders/42', status: 'stored', id: 'm5x8k2r0aa-8', duplicate: false }, { topic: 'dashboard', status: 'not-stored' }] },
  { status: 'not-stored', byTopic: [{ topic: 'users/23', status: 'not-stored' }] }
]

/** What the reply's message says of a batch that failed part-way. */
function batchOutcome (described: readonly EventOutcome[]): string {
  const count = (status: EventOutcome['status']): number => described.filter((event) => event.status === status).length
  const notStored = count('not-stored')
  const partial = count('partial')
  const unknown = count('unknown')
  return `${count('stored')} of ${described.length} events were stored` +
    `${partial === 0 ? '' : `, ${partial} in part`}, ${notStored} ${notStored === 1 ? 'was' : 'were'} not` +
    `${unknown === 0 ? '' : `, ${unknown} may be`}: retry the batch with the same idempotency keys`
}

/** Seconds a client waits before retrying a batch that failed part-way (as a 503 of the error handler says). */
const RETRY_AFTER_SECONDS = 1

/**
 * POST /v1/events/batch: publish many events in one request, each with the fields of POST /v1/events. The whole
 * batch is checked first (size, every field, data depth, every topic against the token): a bad one stores
 * nothing. Then the events are published in their order; a failure part-way says which were stored.
 */
const eventsBatch: FastifyPluginAsyncTypebox = async (fastify) => {
  const { maxBatchEvents } = fastify.config
  // Each event to N topics costs N topic-events, from the same budget as POST /v1/events; repeats count once.
  const quota = fastify.publishQuota.routeHooks((body) => {
    const events = (body as { events?: unknown } | null)?.events
    if (!Array.isArray(events)) return 1
    let weight = 0
    for (const event of events) {
      const topic = (event as { topic?: unknown } | null)?.topic
      weight += Array.isArray(topic) ? new Set(topic).size : 1
    }
    return Math.max(1, weight)
  })
  const PublishBatchBody = publishBatchBody(maxBatchEvents)
  const replies = errorReplies([
    { error: new errorCodes.FST_ERR_VALIDATION('body/events/17/topic must be a topic name: 1-256 characters from A-Z a-z 0-9 and - _ . ~ : @ /'), when: 'a missing, unknown or ill-typed field in any event (the first such event\'s index and field are named), or no events; nothing was stored' },
    { error: new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY(), when: 'the body is not valid JSON' },
    { error: new errorCodes.FST_ERR_CTP_EMPTY_JSON_BODY(), when: 'the body is empty' },
    { error: new DataTooDeepError('body/events/3/data', MAX_DATA_DEPTH), when: `an event's \`data\` nests deeper than ${MAX_DATA_DEPTH} levels; nothing was stored` },
    { error: new TokenMissingError('publishing needs a token: send Authorization: Bearer <jwt>'), when: 'a key is configured and the request has no bearer token' },
    { error: new TokenInvalidError('the token has expired'), when: 'the token does not verify: signature, algorithm, expiry, `nbf`, issuer, audience, or a malformed `herald` claim' },
    { error: new ForbiddenError('body/events/4: this token may not publish to topic "billing"'), when: 'the token\'s `herald.publish` patterns do not cover a topic of an event (the first such event\'s index and the topic are named); nothing was stored' },
    hostRefused,
    { error: new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE(), when: 'the body is larger than `HERALD_MAX_BODY_BYTES`' },
    { error: new BatchTooLargeError(maxBatchEvents, maxBatchEvents + 1), when: 'more events than `HERALD_MAX_BATCH_EVENTS`; nothing was stored' },
    { error: new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE(), when: 'the content type is not `application/json`' },
    { error: new RateLimitedError(600, 'minute', 42), when: 'more than `HERALD_RATE_LIMIT_PER_MINUTE` topic-events (each event to N topics counts N; the budget `POST /v1/events` counts against too) in a minute from one token subject (or one address without a verified token), on this instance' },
    { error: new PublishOverLimitError(64, 50), when: 'the batch alone names more topic-events than `HERALD_RATE_LIMIT_PER_MINUTE`: it never fits, so there is no `Retry-After`' },
    { error: new BrokerUnavailableError(UNAVAILABLE_EXAMPLE_MESSAGE), when: 'Redis failed during the batch (the message names the first event that failed, its topic when it has several, and why): `events` says which events were `stored` (with their ids), `partial` (stored on some of their topics), `not-stored`, or `unknown` (Redis did not answer within `HERALD_REDIS_COMMAND_TIMEOUT_MS`: it may be stored), and, for each event not stored on every topic, `byTopic` says what became of it on each topic. Retrying the whole batch with the same idempotency keys completes it with no duplicate' },
    { error: new RedisFullError('event 2: Redis is out of memory (used memory above its maxmemory, and its policy evicts nothing): the event was not stored; history expires, or raise maxmemory. 2 of 5 events were stored, 3 were not: retry the batch with the same idempotency keys'), when: 'Redis reached its `maxmemory` under `noeviction` during the batch: `events` says which events were stored, as above' }
  ])
  // A failure part-way carries each event's outcome beside the error; the schema lists it so it is serialized.
  const { 503: unavailable, ...otherReplies } = replies
  const { properties, ...annotations } = unavailable as TObject
  const examples = (annotations as Record<string, unknown>)['x-examples'] as Record<string, { value: object }>
  const example = examples.HERALD_BROKER_UNAVAILABLE as { value: object }
  examples.HERALD_BROKER_UNAVAILABLE = { ...example, value: { ...example.value, events: UNAVAILABLE_EXAMPLE_EVENTS } }
  const UnavailableReply = Type.Object({
    ...properties as typeof ErrorReply.properties,
    events: Type.Optional(Type.Array(BatchEventOutcome, { description: 'what became of each event of the batch, in its order' }))
  }, annotations)

  fastify.post('/v1/events/batch', {
    config: { publish: true, publishBatch: true },
    onRequest: quota.onRequest,
    onResponse: (_request, reply, done) => {
      fastify.metrics.publishDuration(reply.elapsedTime / 1000)
      done()
    },
    // Before the schema's per-event patterns, cheapest first: the count of events, each event's count of topic
    // names, then the rest of the rate limit's charge.
    preValidation: [async (request) => {
      const events = (request.body as { events?: unknown } | null)?.events
      if (!Array.isArray(events)) return
      if (events.length > maxBatchEvents) throw new BatchTooLargeError(maxBatchEvents, events.length)
      for (const [index, event] of events.entries()) {
        const topic = (event as { topic?: unknown } | null)?.topic
        if (Array.isArray(topic) && topic.length > MAX_TOPICS_PER_EVENT) {
          throw new errorCodes.FST_ERR_VALIDATION(`body/events/${index}/topic must name at most ${MAX_TOPICS_PER_EVENT} topics; this one names ${topic.length}`)
        }
      }
    }, quota.preValidation],
    schema: {
      summary: 'Publish a batch of events',
      operationId: 'publishEventBatch',
      description: `Publishes up to ${maxBatchEvents} events (\`HERALD_MAX_BATCH_EVENTS\`), each with the fields of ` +
        '`POST /v1/events`, in one request, in their order: within a topic, events get positions in batch order. ' +
        'The whole batch is checked first (fields, data depth, every topic against the token): an invalid or ' +
        'forbidden event refuses the whole batch, naming its index, and nothing is stored. The body is bounded by ' +
        '`HERALD_MAX_BODY_BYTES` too. Each event may carry its own idempotency key: retrying a batch that failed ' +
        'part-way with the same keys stores only what was missing.',
      tags: ['publish'],
      security: [{ bearerToken: [] }],
      body: PublishBatchBody,
      response: { 202: PublishBatchReply, ...otherReplies, 503: UnavailableReply }
    },
    // A bad batch is described by its first bad event, and checked no further.
    validatorCompiler: () => compileBatchValidator(PublishBatchBody, 'events'),
    schemaErrorFormatter: validationFormatter({ body: PublishBatchBody })
  }, async (request, reply) => {
    const events = request.body.events
    const inputs: PublishInput[] = []
    for (const [index, event] of events.entries()) {
      if (nestsDeeperThan(event.data, MAX_DATA_DEPTH)) throw new DataTooDeepError(`body/events/${index}/data`, MAX_DATA_DEPTH)
      const input: PublishInput = {
        topics: uniqueTopics(typeof event.topic === 'string' ? [event.topic] : event.topic),
        // Encoded once here; every subscriber on every instance gets these same bytes.
        data: JSON.stringify(event.data)
      }
      if (event.type !== undefined) input.type = event.type
      if (event.retry !== undefined) input.retry = event.retry
      if (event.idempotencyKey !== undefined) input.idempotencyKey = event.idempotencyKey
      inputs.push(input)
    }
    authorize(fastify.bearerToken(request), inputs)

    const outcomes = await fastify.hub.publishBatch(inputs)
    const { events: described, failure } = describeOutcomes(inputs, outcomes)
    let stored = 0
    for (const event of described) {
      if (event.status !== 'stored') continue
      stored++
      fastify.metrics.published(event.duplicate === true ? 'duplicate' : 'stored')
    }
    if (failure === undefined) {
      return reply.code(202).send({ events: outcomes.map((outcome) => (outcome as { result: PublishResult }).result) })
    }

    const outcome = batchOutcome(described)
    const { statusCode = 500, code } = failure.error as { statusCode?: number, code?: unknown }
    // Counted as a refused single publish is: each event not stored on every topic, and the request by its status.
    for (let refused = described.length - stored; refused > 0; refused--) fastify.metrics.published('refused')
    if (typeof code !== 'string' || !code.startsWith('HERALD_') || statusCode < 500) {
      // A bug (the route checked every event, so Redis has no reason to refuse one), as the error handler treats
      // one: logged with its stack, answered without its details.
      request.log.error({ err: failure.error, stored }, 'batch publish failed')
      fastify.metrics.publishRefused(500)
      return (reply as FastifyReply).code(500).send({ statusCode: 500, error: 'Internal Server Error', message: `internal error; ${outcome}`, events: described })
    }
    fastify.metrics.publishRefused(statusCode)
    const message = `event ${failure.index}${failure.topic === undefined ? '' : ` on topic "${failure.topic}"`}: ${failure.error.message}. ${outcome}`
    request.log.warn(failure.error.cause === undefined ? { code, stored } : { code, stored, err: failure.error.cause }, message)
    return (reply as FastifyReply).code(statusCode).header('retry-after', String(RETRY_AFTER_SECONDS)).send({
      statusCode,
      error: STATUS_CODES[statusCode] ?? 'Error',
      code,
      message,
      events: described
    })
  })

  /**
   * Every topic of the batch against the one token, in one check. When a topic is refused, the events are checked
   * one by one to name the first one refused.
   */
  function authorize (token: string | undefined, inputs: readonly PublishInput[]): void {
    try {
      fastify.authorizer.authorizePublish(token, uniqueTopics(inputs.flatMap((input) => input.topics)))
    } catch (error) {
      if (!(error instanceof ForbiddenError)) throw error
      for (const [index, input] of inputs.entries()) {
        try {
          fastify.authorizer.authorizePublish(token, input.topics)
        } catch (refused) {
          throw new ForbiddenError(`body/events/${index}: ${(refused as Error).message}`)
        }
      }
      throw error
    }
  }
}

export default eventsBatch
