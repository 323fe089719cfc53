import { TopicHistory } from './topic-history.js'
import { eventId, type Head, type HistoryRead, type PublishInput, type PublishResult, type StoredEvent, type Transport, type TransportHealth, type TransportSink } from './transport.js'

export interface MemoryTransportOptions {
  historySize: number
  /** A topic's history is dropped this long after its last event. */
  historyRetentionMs: number
  idempotencyTtlMs: number
}

/** Epochs made in one millisecond by one process still differ: the low digits count them. */
let epochsMade = 0

/** A new epoch: the time in microseconds-like units, base 36, as the Redis publish script makes it. */
function newEpoch (): string {
  return (Date.now() * 1000 + (epochsMade++ % 1000)).toString(36)
}

interface RememberedPublish {
  id: string
  topics: string[]
  expires: number
}

/** The embedded transport: one process, no dependencies, the same contract as the Redis transport. */
export class MemoryTransport implements Transport {
  readonly kind = 'memory'
  /** One epoch per memory transport: its ids mean nothing to another process or a restarted one. */
  readonly epoch = newEpoch()
  private lastId = 0
  // Insertion order is last-publish order (a topic moves to the end when published to), so the topics whose
  // newest event passed the retention are always at the front.
  private readonly histories = new Map<string, TopicHistory>()
  /** The newest id of any topic dropped for retention: a position below it may have lost events with one. */
  private forgottenThrough = 0
  // Insertion order is expiry order (one TTL for all), so expired keys are always at the front.
  private readonly idempotencyKeys = new Map<string, RememberedPublish>()
  private sink: TransportSink | undefined

  constructor (private readonly options: MemoryTransportOptions) {}

  bind (sink: TransportSink): void {
    this.sink = sink
  }

  async publish (input: PublishInput): Promise<PublishResult> {
    const now = Date.now()
    if (input.idempotencyKey !== undefined) {
      this.forgetExpiredKeys(now)
      const earlier = this.idempotencyKeys.get(input.idempotencyKey)
      if (earlier !== undefined) return { id: earlier.id, topics: earlier.topics, duplicate: true }
    }

    const stored: StoredEvent = { id: ++this.lastId, epoch: this.epoch, data: input.data, time: now }
    if (input.type !== undefined) stored.type = input.type
    if (input.retry !== undefined) stored.retry = input.retry
    this.forgetExpiredTopics(now)
    for (const topic of input.topics) this.historyOf(topic).append(stored)
    if (this.sink !== undefined) for (const topic of input.topics) this.sink.deliver(topic, stored)

    const id = eventId(this.epoch, stored.id)
    if (input.idempotencyKey !== undefined) {
      this.idempotencyKeys.set(input.idempotencyKey, { id, topics: input.topics, expires: now + this.options.idempotencyTtlMs })
    }
    return { id, topics: input.topics, duplicate: false }
  }

  async head (): Promise<Head> {
    return { epoch: this.epoch, seq: this.lastId }
  }

  async read (topics: readonly string[], afterId: number, limit: number, maxBytes: number): Promise<HistoryRead> {
    this.forgetExpiredTopics(Date.now())
    const old = afterId < this.forgottenThrough
    return {
      epoch: this.epoch,
      head: this.lastId,
      topics: topics.map((topic) => {
        const history = this.histories.get(topic)
        if (history === undefined) return { topic, events: [], full: false, trimmedThrough: 0, forgotten: old }
        const forgotten = old && history.trimmedThrough === 0 && history.firstId > afterId + 1
        return { topic, ...history.after(afterId, limit, maxBytes), trimmedThrough: history.trimmedThrough, forgotten }
      })
    }
  }

  // Every event reaches the sink from publish(): there is nothing to start or stop per topic.
  async listen (): Promise<void> {}
  unlisten (): void {}

  health (): TransportHealth {
    return { status: 'ok' }
  }

  async close (): Promise<void> {
    this.sink = undefined
  }

  private historyOf (topic: string): TopicHistory {
    let history = this.histories.get(topic)
    if (history === undefined) {
      history = new TopicHistory(this.options.historySize)
    } else {
      this.histories.delete(topic)
    }
    this.histories.set(topic, history)
    return history
  }

  private forgetExpiredTopics (now: number): void {
    for (const [topic, history] of this.histories) {
      if (history.newestTime > now - this.options.historyRetentionMs) break
      this.forgottenThrough = Math.max(this.forgottenThrough, history.newestId)
      this.histories.delete(topic)
    }
  }

  private forgetExpiredKeys (now: number): void {
    for (const [key, remembered] of this.idempotencyKeys) {
      if (remembered.expires > now) break
      this.idempotencyKeys.delete(key)
    }
  }
}
