import type { HistoryRead, StoredEvent } from '../transport/transport.js'

export type ResetReason = 'history-trimmed' | 'history-expired' | 'malformed-id' | 'unknown-id'

/** Sent in-band as `event: herald.reset` before anything else, so a page knows to reload its state. */
export interface ResetNotice {
  reason: ResetReason
  topics: string[]
  lastEventId: string
}

export interface ReplayPlan {
  reset?: ResetNotice
  /** Events to send, in id order, each once even when it was published to several of the topics. */
  events: StoredEvent[]
  /** The position live delivery continues from: only ids above it are sent. */
  position: number
}

const ID = /^(0|[1-9]\d{0,15})$/

/** Parses a Last-Event-ID; undefined when it is not one of ours. */
export function parseEventId (value: string): number | undefined {
  const text = value.trim()
  if (!ID.test(text)) return undefined
  const id = Number(text)
  return Number.isSafeInteger(id) ? id : undefined
}

/**
 * Decides what a resuming client gets. Pure: the transport fetches, this decides.
 * A position the history can no longer cover is never skipped silently: it yields a reset notice,
 * then whatever is still retained. An id we never issued resets to live.
 */
export function planReplay (lastEventId: string, read: HistoryRead, now: number, ttlMs: number): ReplayPlan {
  const after = parseEventId(lastEventId)
  const allTopics = read.topics.map((history) => history.topic)
  if (after === undefined) {
    return { reset: { reason: 'malformed-id', topics: allTopics, lastEventId }, events: [], position: read.head }
  }
  if (after > read.head) {
    return { reset: { reason: 'unknown-id', topics: allTopics, lastEventId }, events: [], position: read.head }
  }

  const oldestKept = ttlMs > 0 ? now - ttlMs : -Infinity
  const trimmed: string[] = []
  const expired: string[] = []
  const byId = new Map<number, StoredEvent>()
  for (const history of read.topics) {
    if (history.trimmedThrough > after) trimmed.push(history.topic)
    let lostToTime = false
    for (const event of history.events) {
      if (event.id <= after) continue
      if (event.time < oldestKept) lostToTime = true
      else byId.set(event.id, event)
    }
    if (lostToTime && !trimmed.includes(history.topic)) expired.push(history.topic)
  }
  const events = [...byId.values()].sort((a, b) => a.id - b.id)
  const position = Math.max(after, events.at(-1)?.id ?? after)
  const plan: ReplayPlan = { events, position }
  if (trimmed.length > 0 || expired.length > 0) {
    plan.reset = {
      reason: trimmed.length > 0 ? 'history-trimmed' : 'history-expired',
      topics: [...trimmed, ...expired],
      lastEventId
    }
  }
  return plan
}
