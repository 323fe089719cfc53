import type { ResetReason } from '../protocol.js'
import type { StoredEvent, TopicRead } from '../transport/transport.js'

/** Where a topic's replay starts. */
export interface TopicStart {
  /** The epoch of `seq`; undefined for "from the start of the current epoch" (`Last-Event-ID: 0`). */
  epoch: string | undefined
  /** Events with a sequence number above this are replayed. */
  seq: number
  /**
   * True for a stream that was already delivering (or a topic it saw no epoch on): when the epoch changed under
   * it, the new epoch's events are all news to it, so they are replayed from its start. A resuming client with a
   * position of another epoch continues from the head instead.
   */
  live: boolean
}

export interface TopicPlan {
  /** Why the replay could not start where asked: a `herald.reset` for this topic comes first. */
  reset?: ResetReason
  /** Events to send, in sequence order: all after `after` in `epoch`. */
  events: StoredEvent[]
  after: number
  /** The epoch live delivery continues in, and the position it continues from (only later events are sent). */
  epoch: string
  seq: number
  /** False when the page was full: the next page starts after `seq`. */
  done: boolean
}

/**
 * Decides what a resuming stream gets from one page of a topic's history. Pure: the transport fetches, this decides.
 * A position the history can no longer cover is never skipped silently: it yields a reset, then whatever is still
 * retained. A position above the head or of another epoch (Redis lost data, a failover, an id we never issued)
 * resets to the head.
 */
export function planTopic (start: TopicStart, read: TopicRead, now: number, ttlMs: number): TopicPlan {
  let after = start.seq
  let reset: ResetReason | undefined
  if (start.epoch !== undefined && start.epoch !== read.epoch) {
    if (!start.live) return { reset: 'epoch-changed', events: [], after: read.head, epoch: read.epoch, seq: read.head, done: true }
    after = 0
    // A stream that saw no epoch at all (nothing published yet) lost nothing: the new epoch is simply its first.
    if (start.epoch !== '') reset = 'epoch-changed'
  } else if (start.epoch === undefined) {
    after = 0
  } else if (after > read.head) {
    return { reset: 'unknown-id', events: [], after: read.head, epoch: read.epoch, seq: read.head, done: true }
  }
  if (read.oldest > after + 1 && read.head > after) reset ??= 'history-trimmed'
  const oldestKept = ttlMs > 0 ? now - ttlMs : -Infinity
  const events: StoredEvent[] = []
  for (const event of read.events) {
    if (event.seq <= after) continue
    if (event.time < oldestKept) reset ??= 'history-expired'
    else events.push(event)
  }
  const last = read.events.at(-1)?.seq ?? after
  const plan: TopicPlan = read.full
    ? { events, after, epoch: read.epoch, seq: Math.max(after, last), done: false }
    : { events, after, epoch: read.epoch, seq: Math.max(after, read.head), done: true }
  if (reset !== undefined) plan.reset = reset
  return plan
}
