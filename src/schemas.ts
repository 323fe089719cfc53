import { Type } from 'typebox'
import { TOPIC_CHARACTERS, TOPIC_MAX_LENGTH, TOPIC_PATTERN } from './topics.js'

/** The largest number of topics one event may be published to. */
export const MAX_TOPICS_PER_EVENT = 64

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

export const PublishBody = Type.Object({
  topic: Type.Union([TopicName, Type.Array(TopicName, { minItems: 1, maxItems: MAX_TOPICS_PER_EVENT })], {
    description: `a topic name or an array of 1-${MAX_TOPICS_PER_EVENT} topic names`
  }),
  data: Type.Unknown({ description: 'any JSON value' }),
  type: Type.Optional(EventType),
  retry: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400_000, description: 'a reconnection delay in milliseconds, 0-86400000' })),
  idempotencyKey: Type.Optional(IdempotencyKey)
}, { additionalProperties: false })

export const PublishHeaders = Type.Object({
  'idempotency-key': Type.Optional(IdempotencyKey)
})

export const PublishReply = Type.Object({
  id: Type.String(),
  topics: Type.Array(Type.String()),
  duplicate: Type.Boolean()
})

export const StreamQuery = Type.Object({
  topic: Type.Union([TopicName, Type.Array(TopicName, { minItems: 1 })], {
    description: 'one or more topic names (repeat the parameter: ?topic=a&topic=b)'
  }),
  lastEventId: Type.Optional(Type.String({ maxLength: 64, description: 'the id of the last event seen, 1-64 characters' })),
  envelope: Type.Optional(Type.Union([Type.Literal('1'), Type.Literal('0')], {
    description: '1 to receive each event\'s data as {"topic": the topic it came for, "data": the published data}; 0 (the default) for the published data as it is'
  })),
  access_token: Type.Optional(Type.String({ maxLength: 8192, description: 'a subscriber token (JWT)' }))
})

/**
 * Browsers send back the id of the last event they received: one of ours is short. A longer header is not one
 * of ours, and is refused with a 400 rather than carried into a reset notice or a log at length.
 */
export const StreamHeaders = Type.Object({
  'last-event-id': Type.Optional(Type.String({ maxLength: 64, description: 'the id of the last event seen, at most 64 characters' }))
})

export const ErrorReply = Type.Object({
  statusCode: Type.Integer(),
  error: Type.String(),
  code: Type.Optional(Type.String()),
  message: Type.String()
})
