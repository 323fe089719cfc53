import { TopicHistory } from './topic-history.js'
import type { HistoryRead, PublishInput, PublishResult, StoredEvent, Transport, TransportHealth, TransportSink } from './transport.js'

export interface MemoryTransportOptions {
  historySize: number
  idempotencyTtlMs: number
}

interface RememberedPublish {
  id: string
  topics: string[]
  expires: number
}

/** The embedded transport: one process, no dependencies, the same contract as the Redis transport. */
export class MemoryTransport implements Transport {
  readonly kind = 'memory'
  private lastId = 0
  private readonly histories = new Map<string, TopicHistory>()
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

    const stored: StoredEvent = { id: ++this.lastId, data: input.data, time: now }
    if (input.type !== undefined) stored.type = input.type
    if (input.retry !== undefined) stored.retry = input.retry
    for (const topic of input.topics) this.historyOf(topic).append(stored)
    if (this.sink !== undefined) for (const topic of input.topics) this.sink.deliver(topic, stored)

    const id = String(stored.id)
    if (input.idempotencyKey !== undefined) {
      this.idempotencyKeys.set(input.idempotencyKey, { id, topics: input.topics, expires: now + this.options.idempotencyTtlMs })
    }
    return { id, topics: input.topics, duplicate: false }
  }

  async head (): Promise<number> {
    return this.lastId
  }

  async read (topics: readonly string[], afterId: number): Promise<HistoryRead> {
    return {
      head: this.lastId,
      topics: topics.map((topic) => {
        const history = this.histories.get(topic)
        return { topic, events: history?.after(afterId) ?? [], trimmedThrough: history?.trimmedThrough ?? 0 }
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
      this.histories.set(topic, history)
    }
    return history
  }

  private forgetExpiredKeys (now: number): void {
    for (const [key, remembered] of this.idempotencyKeys) {
      if (remembered.expires > now) break
      this.idempotencyKeys.delete(key)
    }
  }
}
