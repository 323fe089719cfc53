import { Redis } from 'ioredis'
import { MemoryBroker } from '../../src/broker/memory.js'
import { RedisBroker } from '../../src/broker/redis.js'
import type { Broker } from '../../src/broker/types.js'
import type { StreamMessage } from '../../src/broker/subscription.js'
import type { Subscription } from '../../src/broker/subscription.js'
import { until } from '../helper.js'
import type { RedisServer } from './redis-server.js'

export interface BrokerLimits {
  historySize?: number
  historyTtlMs?: number
  idempotencyTtlMs?: number
  maxQueueBytes?: number
}

export interface BrokerUnderTest {
  broker: Broker
  /** Makes history keep only the newest `historySize` events, as retention does (Redis trims lazily). */
  trim: (topic: string) => Promise<void>
  /** Upstream subscriptions for a topic: Redis PUBSUB NUMSUB, or local listeners for memory. */
  upstreamSubscribers: (topic: string) => Promise<number>
  close: () => Promise<void>
}

export type BrokerFactory = (limits?: BrokerLimits) => Promise<BrokerUnderTest>

const defaults = { historySize: 100, historyTtlMs: 0, idempotencyTtlMs: 60_000, maxQueueBytes: 1 << 20 }

export function memoryFactory (): BrokerFactory {
  return async (limits = {}) => {
    const options = { ...defaults, ...limits }
    const broker = new MemoryBroker(options)
    return {
      broker,
      // The ring buffer already keeps only `historySize` events: trimming happens as it fills.
      trim: async () => {},
      upstreamSubscribers: async (topic) => broker.listenerCount(topic),
      close: async () => await broker.close()
    }
  }
}

let prefixCounter = 0

export function redisFactory (server: RedisServer): BrokerFactory {
  return async (limits = {}) => {
    const options = { ...defaults, ...limits, prefix: `test${process.pid}-${++prefixCounter}:` }
    const publisher = new Redis(server.url, { enableOfflineQueue: false, autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 0 })
    const subscriber = new Redis(server.url, { maxRetriesPerRequest: null })
    const admin = new Redis(server.url)
    for (const client of [publisher, subscriber, admin]) client.on('error', () => {})
    await Promise.all([publisher, subscriber, admin].map(async (client) => await until(() => client.status === 'ready', 5_000, 'redis ready')))
    const broker = new RedisBroker(publisher, subscriber, options)
    return {
      broker,
      // MAXLEN ~ trims whole stream nodes of 100 entries; trim exactly, as a long-running deployment would.
      trim: async (topic) => { await admin.xtrim(`${options.prefix}history:${topic}`, 'MAXLEN', options.historySize) },
      upstreamSubscribers: async (topic) => {
        const reply = await admin.pubsub('NUMSUB', `${options.prefix}topic:${topic}`) as [string, number]
        return Number(reply[1])
      },
      close: async () => {
        await broker.close()
        for (const client of [publisher, subscriber, admin]) client.disconnect()
      }
    }
  }
}

/** Reads a subscription the way a stream would, keeping what it yields. */
export function collect (subscription: Subscription): { messages: StreamMessage[], ids: () => number[], waitFor: (count: number) => Promise<void> } {
  const messages: StreamMessage[] = []
  subscription.on('data', (message: StreamMessage) => messages.push(message))
  subscription.on('error', () => {})
  const ids = () => messages.flatMap((message) => 'id' in message ? [message.id] : [])
  return {
    messages,
    ids,
    waitFor: async (count) => await until(() => ids().length >= count, 5_000, `${count} events (have ${ids().length})`)
  }
}

/** Waits until a new subscription has caught up (subscribed upstream and found its starting point). */
export async function subscribed (subscription: Subscription): Promise<void> {
  await until(() => !subscription.holding, 5_000, 'subscription to catch up')
}
