import { Type } from 'typebox'
import { STREAM_REFUSALS } from './errors.js'
import { maxStreamIdLength, RESET_EVENT, UNAVAILABLE_EVENT, type ResetNotice, type UnavailableNotice } from './protocol.js'
import { encodeComment, encodeFrame, encodeOpening } from './sse/encode.js'
import { TOPIC_CHARACTERS, TOPIC_MAX_LENGTH, TOPIC_PATTERN } from './topics.js'

/** The largest number of topics one event may be published to. */
export const MAX_TOPICS_PER_EVENT = 64
/** The most topics HERALD_MAX_TOPICS_PER_STREAM allows. */
export const MAX_TOPICS_PER_STREAM = 64
/** The longest id a stream of the most topics sends: a `Last-Event-ID` longer than this is not one of Herald's. */
export const MAX_STREAM_ID_LENGTH = maxStreamIdLength(MAX_TOPICS_PER_STREAM)

export const TopicName = Type.String({
  minLength: 1,
  maxLength: TOPIC_MAX_LENGTH,
  pattern: TOPIC_PATTERN,
  description: `a topic name: 1-${TOPIC_MAX_LENGTH} characters from ${TOPIC_CHARACTERS}`
})

/**
 * Event types are printable: no control characters, so nothing can break out of the `event:` line. Types
 * starting with `herald.` are Herald's own in-band events (`herald.reset`): a publisher may not forge them.
 */
export const EventType = Type.String({
  minLength: 1,
  maxLength: 128,
  pattern: '^(?!herald\\.)[^\\u0000-\\u001f\\u007f]+$',
  description: 'an event type: 1-128 characters with no control characters (no CR, LF or NUL), not starting with herald.'
})

export const IdempotencyKey = Type.String({
  minLength: 1,
  maxLength: 200,
  pattern: '^[\\u0021-\\u007e]+$',
  description: 'an idempotency key: 1-200 printable ASCII characters without spaces'
})

/** The fields of one event, in a publish's body or in a batch. */
const EventFields = {
  topic: Type.Union([TopicName, Type.Array(TopicName, { minItems: 1, maxItems: MAX_TOPICS_PER_EVENT })], {
    description: `a topic name or an array of 1-${MAX_TOPICS_PER_EVENT} topic names`
  }),
  data: Type.Unknown({ description: 'any JSON value' }),
  type: Type.Optional(EventType),
  retry: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400_000, description: 'a reconnection delay in milliseconds, 0-86400000' })),
  idempotencyKey: Type.Optional(IdempotencyKey)
}

export const PublishBody = Type.Object(EventFields, {
  additionalProperties: false,
  // Request examples of the API reference (/openapi.json, /docs).
  'x-examples': {
    message: { summary: 'a chat message to one topic', value: { topic: 'chat', type: 'message', data: { user: 'ada', text: 'hello' } } },
    severalTopics: {
      summary: 'one event to several topics, safe to retry',
      value: { topic: ['orders/42', 'dashboard'], type: 'order.shipped', data: { orderId: 42, carrier: 'ups' }, idempotencyKey: 'order-42-shipped' }
    },
    plain: { summary: 'any JSON value as data', value: { topic: 'chat/lobby', data: 'hi' } }
  }
})

export const PublishHeaders = Type.Object({
  'idempotency-key': Type.Optional(IdempotencyKey)
})

export const PublishReply = Type.Object({
  id: Type.Optional(Type.String({ description: 'for an event on one topic, its id there: `<epoch>-<seq>`, the id its streams carry (compare `seq` within one epoch only)' })),
  ids: Type.Array(Type.String(), { description: 'the event\'s id on each of its topics, in the order of `topics`: every topic numbers its own events, `<epoch>-<seq>`' }),
  topics: Type.Array(Type.String(), { description: 'the topics it was published to, each once' }),
  duplicate: Type.Boolean({ description: 'true when the idempotency key was used before: nothing new was stored or sent, the ids are the first publish\'s' })
}, {
  description: 'stored (in Redis, or the memory broker) and fanned out to every subscriber of its topics',
  'x-examples': {
    published: { summary: 'stored and sent', value: { id: 'm5x8k2qz3f-17', ids: ['m5x8k2qz3f-17'], topics: ['chat'], duplicate: false } },
    duplicate: { summary: 'the same idempotency key again, for an event on two topics', value: { ids: ['m5x8k2qz3f-17', 'm6a1b9wq0c-4'], topics: ['orders/42', 'dashboard'], duplicate: true } }
  }
})

/** The body of POST /v1/events/batch, with the configured largest number of events. */
export function publishBatchBody (maxEvents: number) {
  return Type.Object({
    events: Type.Array(Type.Object(EventFields, { additionalProperties: false, description: 'an event, with the fields of POST /v1/events' }), {
      minItems: 1,
      maxItems: maxEvents,
      description: `1-${maxEvents} events (HERALD_MAX_BATCH_EVENTS), published in this order`
    })
  }, {
    additionalProperties: false,
    'x-examples': {
      perUser: {
        summary: 'a notification to each of three users, safe to retry',
        value: {
          events: [
            { topic: 'users/17', type: 'notice', data: { text: 'Your order shipped' }, idempotencyKey: 'order-42-shipped-17' },
            { topic: 'users/23', type: 'notice', data: { text: 'New comment' }, idempotencyKey: 'comment-9-23' },
            { topic: 'users/17', type: 'notice', data: { text: 'New comment' }, idempotencyKey: 'comment-9-17' }
          ]
        }
      },
      severalTopics: { summary: 'events to several topics each', value: { events: [{ topic: ['orders/42', 'dashboard'], data: { status: 'paid' } }, { topic: 'dashboard', data: { status: 'idle' } }] } }
    }
  })
}

const EventIds = Type.Array(Type.String(), { description: 'the event\'s id on each of its topics, `<epoch>-<seq>` of that topic, in the order of `topics`' })
const EventTopics = Type.Array(Type.String(), { description: 'the topics it was published to, each once' })
const EventDuplicate = Type.Boolean({ description: 'true when its idempotency key was used before: nothing new was stored or sent, `ids` are the first publish\'s' })

export const PublishBatchReply = Type.Object({
  events: Type.Array(Type.Object({ ids: EventIds, topics: EventTopics, duplicate: EventDuplicate }), { description: 'one per event of the batch, in its order' })
}, {
  description: 'every event stored (in Redis, or the memory broker) and fanned out to the subscribers of its topics',
  'x-examples': {
    published: {
      summary: 'stored and sent; the third event was a retry',
      value: {
        events: [
          { ids: ['m5x8k2qz3f-17'], topics: ['users/17'], duplicate: false },
          { ids: ['m5x8k2qz3f-4'], topics: ['users/23'], duplicate: false },
          { ids: ['m5x8k2qz3f-16'], topics: ['users/17'], duplicate: true }
        ]
      }
    }
  }
})

/** What became of each event of a batch that failed part-way (the 503's `events`). */
export const BatchEventOutcome = Type.Object({
  status: Type.Union([Type.Literal('stored'), Type.Literal('partial'), Type.Literal('not-stored'), Type.Literal('unknown')], {
    description: '`stored` on every topic (with its ids); `partial`: stored on some of its topics, not (or maybe not) on the others; ' +
      '`not-stored` on any topic; or `unknown`: stored on no topic for sure, but Redis did not answer in time on some, so it may be. ' +
      'Any but `stored` comes with `byTopic`; retry with its idempotency key to complete it'
  }),
  ids: Type.Optional(EventIds),
  topics: Type.Optional(EventTopics),
  duplicate: Type.Optional(EventDuplicate),
  byTopic: Type.Optional(Type.Array(Type.Object({
    topic: Type.String({ description: 'one of the event\'s topics' }),
    status: Type.Union([Type.Literal('stored'), Type.Literal('not-stored'), Type.Literal('unknown')], {
      description: '`stored` on this topic (with its `id`), `not-stored`, or `unknown` (Redis did not answer in time: it may be stored)'
    }),
    id: Type.Optional(Type.String({ description: 'its id on this topic, `<epoch>-<seq>`, when stored' })),
    duplicate: Type.Optional(Type.Boolean({ description: 'when stored: true when its idempotency key was used before on this topic' }))
  }), { description: 'on an event not stored on every topic: what became of it on each of its topics, in the order they were named (each once)' }))
})

export const StreamQuery = Type.Object({
  topic: Type.Union([TopicName, Type.Array(TopicName, { minItems: 1 })], {
    description: 'one or more topic names (repeat the parameter: ?topic=a&topic=b)'
  }),
  lastEventId: Type.Optional(Type.String({ maxLength: MAX_STREAM_ID_LENGTH, description: `the id of the last event seen, at most ${MAX_STREAM_ID_LENGTH} characters` })),
  envelope: Type.Optional(Type.Union([Type.Literal('1'), Type.Literal('0')], {
    description: '1 to receive each event\'s data as {"topic": the topic it came for, "data": the published data}; 0 (the default) for the published data as it is'
  })),
  access_token: Type.Optional(Type.String({ maxLength: 8192, description: 'a subscriber token (JWT)' }))
})

const EXAMPLE_EVENT = { id: 'm5x8k2qz3f-17', event: 'message', data: JSON.stringify({ user: 'ada', text: 'hello' }) }
const REFUSAL_REASONS = Object.entries(STREAM_REFUSALS)
  .map(([code, { reason, retryMs }]) => `\`${reason}\` (${code}, about ${retryMs / 1000} s)`).join(', ')

/**
 * The 200 answer of GET /v1/stream, for the API reference: what a stream carries, with examples the encoder
 * itself makes. Fastify never serializes it (the route writes to the socket, refusals are strings).
 */
export const EventStreamReply = {
  description: [
    'A Server-Sent Events stream (`text/event-stream; charset=utf-8`, `Cache-Control: no-cache, no-transform`,',
    '`X-Accel-Buffering: no`; over HTTP/1.1 `Connection: close`: the body runs until the connection closes). It carries:',
    '',
    '- at once: the comment line `: herald` and `retry: <ms>` (`HERALD_RETRY_MS`), with no blank line after them',
    '  (no client makes a message of them);',
    '- one frame per event: `id: <epoch>-<seq>`, `event: <type>` (`message` unless published with a `type`),',
    '  `retry: <ms>` when published with one, and `data: <the published data, JSON-encoded>` (several `data:`',
    '  lines if the JSON has line breaks), then a blank line;',
    '- `event: herald.reset` with `data: {"reason","topics","lastEventId"}` before anything else when history no',
    '  longer covers the asked-for position; reasons `history-trimmed`, `history-expired`, `malformed-id`,',
    '  `unknown-id`, `epoch-changed`: reload your state;',
    '- heartbeat comment lines (`:`, no blank line) every `HERALD_HEARTBEAT_MS` on idle streams;',
    '- with `envelope=1`, each event\'s `data` is `{"topic","data"}`: the topic it came for, and the published data.',
    '',
    'Resume with the `Last-Event-ID` header (browsers send it by themselves when they reconnect) or the',
    '`lastEventId` query parameter on a first connection; `0` replays from the oldest retained event. Missed',
    'events come first, in order, each once, then live ones. A stream opened with a token ends when it expires.',
    '',
    'A temporary refusal is this same 200 stream, because EventSource gives up for good on any other status:',
    '`: herald`, `retry: <ms>` (jittered over 0.5-1.5 times the delay), `event: herald.unavailable` with',
    `\`data: {"reason","retryMs"}\`, and the end. Reasons: ${REFUSAL_REASONS}.`
  ].join('\n'),
  content: {
    'text/event-stream': {
      schema: Type.String({ description: 'Server-Sent Events: UTF-8 lines of `field: value`, frames ended by a blank line' }),
      examples: {
        events: {
          summary: 'the opening lines, an event, a heartbeat',
          value: encodeOpening(2000) + encodeFrame(EXAMPLE_EVENT) + encodeComment()
        },
        reset: {
          summary: 'resuming after an event history no longer holds',
          value: encodeOpening(2000) +
            encodeFrame({ event: RESET_EVENT, data: JSON.stringify({ reason: 'history-trimmed', topics: ['chat'], lastEventId: 'm5x8k2qz3f-3' } satisfies ResetNotice) }) +
            encodeFrame(EXAMPLE_EVENT)
        },
        refused: {
          summary: 'a temporary refusal: EventSource reconnects after retryMs',
          value: encodeOpening(4213) + encodeFrame({ event: UNAVAILABLE_EVENT, data: JSON.stringify({ reason: 'instance-full', retryMs: 4213 } satisfies UnavailableNotice) })
        }
      }
    }
  }
}

/**
 * Browsers send back the id of the last event they received: one of ours is short. A longer header is not one
 * of ours, and is refused with a 400 rather than carried into a reset notice or a log at length.
 */
export const StreamHeaders = Type.Object({
  'last-event-id': Type.Optional(Type.String({ maxLength: MAX_STREAM_ID_LENGTH, description: `the id of the last event seen, at most ${MAX_STREAM_ID_LENGTH} characters` }))
})

/** Every error reply (plugins/error-handler.ts); `error` is the status's reason phrase. */
export const ErrorReply = Type.Object({
  statusCode: Type.Integer(),
  error: Type.String({ description: 'the status\'s standard reason phrase' }),
  code: Type.Optional(Type.String({ description: 'a HERALD_* or Fastify FST_ERR_* code' })),
  message: Type.String({ description: 'what is wrong, naming the field, topic or limit' })
})
