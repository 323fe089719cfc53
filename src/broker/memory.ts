import { toHeraldEvent } from './event.js'
import { Fanout } from './fanout.js'
import type { HistoryRead } from './replay.js'
import type { Subscription } from './subscription.js'
import { TopicHistory } from './topic-history.js'
import type { Broker, BrokerHealth, PublishInput, PublishResult, StoredEvent, SubscribeOptions } from './types.js'

export interface MemoryBrokerOptions {
  historySize: number
  historyTtlMs: number
  idempotencyTtlMs: number
  maxQueueBytes: number
}

interface RememberedPublish {
  id: string
  topics: string[]
  expires: number
}

/** The embedded broker: one process, no dependencies, the same contract as the Redis broker. */
export class MemoryBroker implements Broker {
  readonly kind = 'memory'
  private lastId = 0
  private readonly histories = new Map<string, TopicHistory>()
  // Insertion order is expiry order (one TTL for all), so expired keys are always at the front.
  private readonly idempotencyKeys = new Map<string, RememberedPublish>()
  private readonly fanout: Fanout

  constructor (private readonly options: MemoryBrokerOptions) {
    this.fanout = new Fanout(
      { head: async () => this.lastId, read: async (topics, afterId) => this.read(topics, afterId) },
      { activate: async () => {}, deactivate: () => {} },
      { maxQueueBytes: options.maxQueueBytes, historyTtlMs: options.historyTtlMs }
    )
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

    const event = toHeraldEvent(stored)
    for (const topic of input.topics) this.fanout.dispatch(topic, event)

    const id = String(stored.id)
    if (input.idempotencyKey !== undefined) {
      this.idempotencyKeys.set(input.idempotencyKey, { id, topics: input.topics, expires: now + this.options.idempotencyTtlMs })
    }
    return { id, topics: input.topics, duplicate: false }
  }

  subscribe (topics: string[], options: SubscribeOptions = {}): Subscription {
    return this.fanout.subscribe(topics, options.lastEventId)
  }

  health (): BrokerHealth {
    return { broker: 'memory', status: 'ok' }
  }

  listenerCount (topic: string): number {
    return this.fanout.listenerCount(topic)
  }

  get subscriptionCount (): number {
    return this.fanout.subscriptionCount
  }

  async close (): Promise<void> {
    this.fanout.endAll()
  }

  private read (topics: readonly string[], afterId: number): HistoryRead {
    return {
      head: this.lastId,
      topics: topics.map((topic) => {
        const history = this.histories.get(topic)
        return { topic, events: history?.after(afterId) ?? [], trimmedThrough: history?.trimmedThrough ?? 0 }
      })
    }
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
