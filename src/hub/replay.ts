import type { HistoryRead, StoredEvent } from '../transport/transport.js'

/** Why a replay could not start where the client asked; the reason of a `herald.reset` notice. */
export const RESET_REASONS = ['history-trimmed', 'history-expired', 'malformed-id', 'unknown-id', 'epoch-changed'] as const
export type ResetReason = typeof RESET_REASONS[number]

/** Sent in-band as `event: herald.reset` before anything else, so a page knows to reload its state. */
export interface ResetNotice {
  reason: ResetReason
  topics: string[]
  lastEventId: string
}

/** Where a Last-Event-ID asks to resume. */
export type ResumePoint =
  /** `0`: from the start of the current epoch's retained history. */
  | { kind: 'start' }
  /** `<epoch>-<seq>`: after that event. */
  | { kind: 'position', epoch: string, seq: number }
  /** A plain number from Herald 0.1, which had no epochs: it belongs to another epoch. */
  | { kind: 'legacy' }

export interface ReplayStart {
  /** What the reset notice names: the client's Last-Event-ID, or the stream's own position on a catch-up. */
  lastEventId: string
  /** The epoch of `after`; undefined for `start`, which means the current epoch. */
  epoch: string | undefined
  /** Events with a sequence number above this are replayed. */
  after: number
  /**
   * True for a stream that was already delivering: when the epoch changed under it, the new epoch's events are
   * all news to it, so they are replayed from its start (the read must then be from 0). A resuming client with
   * an id of another epoch continues from the head instead.
   */
  live: boolean
}

export interface ReplayPlan {
  reset?: ResetNotice
  /** Events to send, in id order, each once even when it was published to several of the topics. */
  events: StoredEvent[]
  /** The topic each of `events` is sent for: the first of the read's topics (the stream's, in its order) that holds it. */
  topics: string[]
  /** The epoch live delivery continues in. */
  epoch: string
  /** The position live delivery continues from: only ids above it are sent. */
  position: number
  /** False when a topic filled its page: the next page starts after `position`. */
  done: boolean
}

const EVENT_ID = /^([0-9a-z]{1,16})-(0|[1-9]\d{0,15})$/
const LEGACY_ID = /^[1-9]\d{0,15}$/

/** Parses a Last-Event-ID; undefined when it is not one of ours. */
export function parseEventId (value: string): ResumePoint | undefined {
  const text = value.trim()
  if (text === '0') return { kind: 'start' }
  if (LEGACY_ID.test(text)) return Number.isSafeInteger(Number(text)) ? { kind: 'legacy' } : undefined
  const match = EVENT_ID.exec(text)
  if (match === null) return undefined
  const seq = Number(match[2])
  return Number.isSafeInteger(seq) ? { kind: 'position', epoch: match[1] as string, seq } : undefined
}

/**
 * Decides what a resuming client gets from one page of history. Pure: the
 * transport fetches, this decides. A position the history can no longer cover is never skipped silently: it
 * yields a reset notice, then whatever is still retained. An id we never issued, or one of another epoch, resets
 * to live. A topic that filled its page (`full`) bounds the page: events above its last one wait for the next
 * page, so topics merge in id order across pages.
 */
export function planReplay (start: ReplayStart, read: HistoryRead, now: number, ttlMs: number): ReplayPlan {
  const allTopics = read.topics.map((history) => history.topic)
  const notice = (reason: ResetReason): ResetNotice => ({ reason, topics: allTopics, lastEventId: start.lastEventId })
  let after = start.after
  let reset: ResetNotice | undefined
  if (start.epoch !== undefined && start.epoch !== read.epoch) {
    if (!start.live) return { reset: notice('epoch-changed'), events: [], topics: [], epoch: read.epoch, position: read.head, done: true }
    after = 0
    // A stream that saw no epoch at all (nothing published yet) lost nothing: the new epoch is simply its first.
    if (start.epoch !== '') reset = notice('epoch-changed')
  } else if (after > read.head) {
    return { reset: notice('unknown-id'), events: [], topics: [], epoch: read.epoch, position: read.head, done: true }
  }

  const oldestKept = ttlMs > 0 ? now - ttlMs : -Infinity
  const trimmed: string[] = []
  const expired: string[] = []
  let bound = Infinity
  for (const history of read.topics) {
    if (history.full) bound = Math.min(bound, history.events.at(-1)?.id ?? Infinity)
  }
  const byId = new Map<number, StoredEvent>()
  const topicOf = new Map<number, string>()
  for (const history of read.topics) {
    if (history.trimmedThrough > after) trimmed.push(history.topic)
    let lostToTime = false
    for (const event of history.events) {
      if (event.id <= after || event.id > bound) continue
      if (event.time < oldestKept) {
        lostToTime = true
      } else {
        byId.set(event.id, event)
        if (!topicOf.has(event.id)) topicOf.set(event.id, history.topic)
      }
    }
    if ((lostToTime || history.forgotten) && !trimmed.includes(history.topic)) expired.push(history.topic)
  }
  const events = [...byId.values()].sort((a, b) => a.id - b.id)
  const done = bound === Infinity
  const position = done ? Math.max(after, events.at(-1)?.id ?? after) : bound
  const plan: ReplayPlan = { events, topics: events.map((event) => topicOf.get(event.id) as string), epoch: read.epoch, position, done }
  if (reset === undefined && (trimmed.length > 0 || expired.length > 0)) {
    reset = {
      reason: trimmed.length > 0 ? 'history-trimmed' : 'history-expired',
      topics: [...trimmed, ...expired],
      lastEventId: start.lastEventId
    }
  }
  if (reset !== undefined) plan.reset = reset
  return plan
}
