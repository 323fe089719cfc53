import createError from '@fastify/error'
import type { UnavailableReason } from './protocol.js'

/**
 * Every error Herald answers with, declared once: its `HERALD_*` code, HTTP status and message template.
 * Code anywhere throws these; the app's one error handler turns them into `{ statusCode, error, code, message }`
 * replies. Client errors (4xx) are logged at info without a stack: they are the client's, not the server's.
 */

export const BrokerUnavailableError = createError<'HERALD_BROKER_UNAVAILABLE', 503, [string, { cause: unknown }?]>(
  'HERALD_BROKER_UNAVAILABLE', '%s', 503)
export const RedisFullError = createError<'HERALD_REDIS_FULL', 503, [string, { cause: unknown }?]>(
  'HERALD_REDIS_FULL', '%s', 503)
export const TooManyTopicsError = createError<'HERALD_TOO_MANY_TOPICS', 400, [number, number]>(
  'HERALD_TOO_MANY_TOPICS', 'a stream may subscribe to at most %d topics; this one asked for %d', 400)
export const TooManyConnectionsError = createError<'HERALD_TOO_MANY_CONNECTIONS', 503, [number]>(
  'HERALD_TOO_MANY_CONNECTIONS', 'this instance serves at most %d streams; retry shortly or elsewhere', 503)
export const DrainingError = createError<'HERALD_DRAINING', 503, []>(
  'HERALD_DRAINING', 'this instance is shutting down; retry shortly (another instance will answer)', 503)
export const StreamsPerAddressError = createError<'HERALD_TOO_MANY_STREAMS_PER_ADDRESS', 429, [number]>(
  'HERALD_TOO_MANY_STREAMS_PER_ADDRESS', 'a client address may hold at most %d streams on this instance', 429)
export const StreamsPerSubjectError = createError<'HERALD_TOO_MANY_STREAMS_PER_SUBJECT', 429, [number]>(
  'HERALD_TOO_MANY_STREAMS_PER_SUBJECT', 'a token subject may hold at most %d streams on this instance', 429)
export const DataTooDeepError = createError<'HERALD_DATA_TOO_DEEP', 400, [string, number]>(
  'HERALD_DATA_TOO_DEEP', '%s nests deeper than %d levels', 400)
export const BatchTooLargeError = createError<'HERALD_BATCH_TOO_LARGE', 413, [number, number]>(
  'HERALD_BATCH_TOO_LARGE', 'a batch may hold at most %d events (HERALD_MAX_BATCH_EVENTS); this one has %d', 413)
export const TokenMissingError = createError<'HERALD_TOKEN_MISSING', 401, [string]>(
  'HERALD_TOKEN_MISSING', '%s', 401)
export const TokenInvalidError = createError<'HERALD_TOKEN_INVALID', 401, [string]>(
  'HERALD_TOKEN_INVALID', '%s', 401)
export const ForbiddenError = createError<'HERALD_FORBIDDEN', 403, [string]>(
  'HERALD_FORBIDDEN', '%s', 403)
export const HostRefusedError = createError<'HERALD_HOST_REFUSED', 403, [string]>(
  'HERALD_HOST_REFUSED', 'open development mode answers only requests to a loopback host (localhost, 127.0.0.1, [::1]) or one in HERALD_ALLOWED_HOSTS, not %s', 403)
export const RateLimitedError = createError<'HERALD_RATE_LIMITED', 429, [number, string, number]>(
  'HERALD_RATE_LIMITED', 'at most %d topic-events (an event to N topics counts N) per %s; retry in %d s', 429)
/** Waiting cannot help this one: the publish alone costs more than the whole budget. */
export const PublishOverLimitError = createError<'HERALD_RATE_LIMITED', 429, [number, number]>(
  'HERALD_RATE_LIMITED', 'this publish names %d topics, more than the %d topic-events per minute the rate limit allows', 429)
export const NotFoundError = createError<'HERALD_NOT_FOUND', 404, [string, string]>(
  'HERALD_NOT_FOUND', 'no route for %s %s', 404)

/**
 * Temporary refusals of a stream, by code: EventSource gives up for good on any status but 200, so these are
 * answered as a short 200 event stream (a jittered `retry:`, a `herald.unavailable` event saying why, the end)
 * that it retries. `retryMs` is the middle of the jittered delay; thrown anywhere else, the same delay is the 503's
 * `Retry-After` (a lost broker usually comes back within a second, a full instance frees a slot only when a
 * stream ends).
 */
export const STREAM_REFUSALS: Readonly<Record<string, { reason: UnavailableReason, retryMs: number }>> = {
  HERALD_BROKER_UNAVAILABLE: { reason: 'broker-unavailable', retryMs: 1_000 },
  HERALD_TOO_MANY_CONNECTIONS: { reason: 'instance-full', retryMs: 5_000 },
  HERALD_DRAINING: { reason: 'draining', retryMs: 1_000 },
  HERALD_TOO_MANY_STREAMS_PER_ADDRESS: { reason: 'address-limit', retryMs: 10_000 },
  HERALD_TOO_MANY_STREAMS_PER_SUBJECT: { reason: 'subject-limit', retryMs: 10_000 }
}

/** Seconds a client waits before retrying a 503 that is not a stream refusal. */
export const DEFAULT_RETRY_AFTER_SECONDS = 1

/** Redis refused an event the publish function checks (a caller that bypassed the HTTP API's own checks). */
export const InvalidEventError = createError<'HERALD_INVALID_EVENT', 400, [string]>(
  'HERALD_INVALID_EVENT', 'Redis refused the event: %s', 400)
