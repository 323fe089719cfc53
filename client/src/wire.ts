/**
 * The part of Herald's wire protocol a browser needs: the in-band notices a stream carries (`herald.reset`,
 * `herald.unavailable`) and the frames of an `envelope=1` stream. It lives in the client package, which is built and
 * published on its own and may import nothing outside it; src/protocol.ts re-exports it, so the server, the client
 * and the tests share one definition. Pure: no I/O, no Node-only or DOM-only API. Stream ids are not here: the
 * client keeps them opaque (src/protocol.ts has their format).
 */

/** The SSE event type of a reset notice. */
export const RESET_EVENT = 'herald.reset'
/** The SSE event type of a temporary refusal of a stream. */
export const UNAVAILABLE_EVENT = 'herald.unavailable'

/** Why a stream could not resume where the client asked, on some of its topics. */
export const RESET_REASONS = ['history-trimmed', 'history-expired', 'malformed-id', 'unknown-id', 'epoch-changed'] as const
export type ResetReason = typeof RESET_REASONS[number]

/** The data of `event: herald.reset`: events after `lastEventId` on `topics` may be missing; reload their state. */
export interface ResetNotice {
  reason: ResetReason
  topics: string[]
  lastEventId: string
}

/** Why a stream was refused for now: the reasons of `herald.unavailable`. */
export const UNAVAILABLE_REASONS = ['broker-unavailable', 'instance-full', 'draining', 'address-limit', 'subject-limit'] as const
export type UnavailableReason = typeof UNAVAILABLE_REASONS[number]

/** The data of `event: herald.unavailable`: a temporary refusal; the stream closes and the client retries after `retryMs`. */
export interface UnavailableNotice {
  reason: UnavailableReason
  retryMs: number
}

/** An event's data on an `envelope=1` stream: the topic it is delivered for, and the published data. */
export interface Envelope<Data = unknown> {
  topic: string
  data: Data
}
