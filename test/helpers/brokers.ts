import { Redis, type Cluster } from 'ioredis'
import { Hub } from '../../src/hub/hub.js'
import type { Session } from '../../src/hub/session.js'
import { SseParser, type ParsedEvent } from '../../src/sse/parser.js'
import { MemoryTransport } from '../../src/transport/memory.js'
import { createRedisClients } from '../../src/redis-clients.js'
import { keySlot } from '../../src/redis-topology.js'
import { RedisTransport } from '../../src/transport/redis.js'
import type { Transport } from '../../src/transport/transport.js'
import { until } from '../helper.js'
import { seq } from './event-ids.js'
import type { RedisCluster } from './redis-cluster.js'
import type { RedisServer } from './redis-server.js'

export interface HubLimits {
  /** Redis and Cluster: the key prefix, to put two hubs (two instances) on one deployment; a fresh one by default. */
  prefix?: string
  historySize?: number
  historyTtlMs?: number
  historyRetentionMs?: number
  idempotencyTtlMs?: number
  maxQueueBytes?: number
  heartbeatMs?: number
}

export interface HubUnderTest {
  hub: Hub
  transport: Transport
  /** Makes history keep only the newest `historySize` events, as retention does (Redis trims lazily). */
  trim: (topic: string) => Promise<void>
  /** True while the transport holds history for a topic. */
  historyExists: (topic: string) => Promise<boolean>
  /** Redis and Cluster: deletes every key of the deployment, as expiry after a long idle time does (a new epoch follows). */
  forgetAll?: () => Promise<void>
  /** Upstream subscriptions for a topic: Redis PUBSUB NUMSUB, or local listeners for memory. */
  upstreamSubscribers: (topic: string) => Promise<number>
  close: () => Promise<void>
}

/** Builds a hub over a transport; `wrap` may stand between them (to delay history reads, say). */
export type HubFactory = (limits?: HubLimits, wrap?: (transport: Transport) => Transport) => Promise<HubUnderTest>

const defaults = { historySize: 100, historyTtlMs: 0, historyRetentionMs: 3_600_000, idempotencyTtlMs: 60_000, maxQueueBytes: 1 << 20, heartbeatMs: 60_000 }

export function memoryFactory (): HubFactory {
  return async (limits = {}, wrap = (transport) => transport) => {
    const options = { ...defaults, ...limits }
    const transport = wrap(new MemoryTransport(options))
    const hub = new Hub(transport, options)
    return {
      hub,
      transport,
      // The ring buffer already keeps only `historySize` events: trimming happens as it fills.
      trim: async () => {},
      historyExists: async (topic) => (await transport.read(topic, { epoch: '', seq: 0 }, 1, Infinity)).events.length !== 0,
      upstreamSubscribers: async (topic) => hub.listenerCount(topic),
      close: async () => await hub.close(0)
    }
  }
}

let prefixCounter = 0

export function redisFactory (server: RedisServer): HubFactory {
  return async (limits = {}, wrap = (transport) => transport) => {
    const options = { ...defaults, ...limits, prefix: limits.prefix ?? `test${process.pid}-${++prefixCounter}:` }
    const publisher = new Redis(server.url, { enableOfflineQueue: false, autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 0 })
    const subscriber = new Redis(server.url, { maxRetriesPerRequest: null })
    const admin = new Redis(server.url)
    admin.on('error', () => {})
    await until(() => admin.status === 'ready', 5_000, 'redis ready')
    return await redisHub(options, publisher, subscriber, wrap, {
      admin,
      forgetAll: async () => {
        const keys = await admin.keys(`${options.prefix}*`)
        if (keys.length > 0) await admin.del(...keys)
      },
      upstreamSubscribers: async (channel) => {
        const reply = await admin.pubsub('SHARDNUMSUB', channel) as [string, number]
        return Number(reply[1])
      },
      disconnect: () => admin.disconnect()
    })
  }
}

/**
 * Hubs on a real Redis Cluster, with the clients Herald builds for one (src/redis-clients.ts: ioredis Clusters, the
 * subscriber with one sharded subscriber connection per master), so each topic's keys and channel live on the shard
 * that owns its hash tag. Assertions go through the cluster's own admin client, shared by every hub.
 */
export function clusterFactory (cluster: RedisCluster): HubFactory {
  return async (limits = {}, wrap = (transport) => transport) => {
    const options = { ...defaults, ...limits, prefix: limits.prefix ?? `test${process.pid}-${++prefixCounter}:` }
    const clients = createRedisClients({ url: cluster.url, mode: 'cluster', tls: undefined, commandTimeoutMs: 5_000, connectionName: `test${process.pid}` }, 'cluster')
    const admin = await cluster.admin()
    return await redisHub(options, clients.publisher, clients.subscriber, wrap, {
      admin,
      // Every master holds some of the keys; a DEL may name keys of one slot only.
      forgetAll: async () => {
        const keys = (await Promise.all(admin.nodes('master').map(async (node) => await node.keys(`${options.prefix}*`)))).flat()
        await Promise.all(keys.map(async (key) => await admin.del(key)))
      },
      // Only the shard that owns the channel's slot counts its sharded subscribers.
      upstreamSubscribers: async (channel) => {
        const owner = admin.slots[keySlot(channel)]?.[0]
        const node = admin.nodes('master').find((candidate) => `${candidate.options.host ?? ''}:${candidate.options.port ?? ''}` === owner)
        if (node === undefined) throw new Error(`no master owns the slot of ${channel}`)
        const reply = await node.pubsub('SHARDNUMSUB', channel) as [string, number]
        return Number(reply[1])
      },
      disconnect: () => {}
    })
  }
}

/** What a hub's test needs of its deployment besides Herald's own clients. */
interface Deployment {
  /** A client for assertions, ready. */
  admin: Redis | Cluster
  forgetAll: () => Promise<void>
  upstreamSubscribers: (channel: string) => Promise<number>
  /** Disconnects what the deployment opened for this hub alone. */
  disconnect: () => void
}

/** A hub over a RedisTransport on Herald's two clients, once they are ready; `close` disconnects them. */
async function redisHub (
  options: typeof defaults & { prefix: string },
  publisher: Redis | Cluster,
  subscriber: Redis | Cluster,
  wrap: (transport: Transport) => Transport,
  deployment: Deployment
): Promise<HubUnderTest> {
  const { admin } = deployment
  for (const client of [publisher, subscriber]) client.on('error', () => {})
  await Promise.all([publisher, subscriber].map(async (client) => await until(() => client.status === 'ready', 5_000, 'redis ready')))
  const redisTransport = new RedisTransport(publisher, subscriber, options)
  await redisTransport.load()
  const transport = wrap(redisTransport)
  const hub = new Hub(transport, options)
  return {
    hub,
    transport,
    // MAXLEN ~ trims whole stream nodes of 100 entries; trim exactly, as a long-running deployment would.
    trim: async (topic) => { await admin.xtrim(`${options.prefix}{${topic}}:h`, 'MAXLEN', options.historySize) },
    historyExists: async (topic) => await admin.exists(`${options.prefix}{${topic}}:h`) === 1,
    forgetAll: deployment.forgetAll,
    upstreamSubscribers: async (topic) => await deployment.upstreamSubscribers(`${options.prefix}{${topic}}`),
    close: async () => {
      await hub.close(0)
      for (const client of [publisher, subscriber]) client.disconnect()
      deployment.disconnect()
    }
  }
}

export interface Collected {
  /** Every event the subscription yielded, parsed as a browser would, herald.reset notices included. */
  events: ParsedEvent[]
  /** The bytes received, as text. */
  text: () => string
  /** The stream's last event id, as a browser keeps it (id-only blocks included): what it reconnects with. */
  lastEventId: () => string
  /** Sequence numbers of the events that are not reset notices (single-topic streams: ids are `<epoch>-<seq>`). */
  ids: () => number[]
  /** The data of the events that are not reset notices, parsed. */
  payloads: () => unknown[]
  /** The reset notices, parsed. */
  resets: () => Array<{ reason: string, topics: string[], lastEventId: string }>
  waitFor: (count: number) => Promise<void>
}

/** Reads a subscription the way a stream would, parsing its bytes into events. */
export function collect (subscription: Session): Collected {
  const events: ParsedEvent[] = []
  const parser = new SseParser((event) => events.push(event))
  let text = ''
  subscription.on('data', (chunk: Buffer) => {
    text += chunk.toString('utf8')
    parser.push(chunk.toString('utf8'))
  })
  subscription.on('error', () => {})
  const delivered = () => events.filter((event) => event.event !== 'herald.reset')
  const ids = () => delivered().map((event) => seq(event.id))
  return {
    events,
    text: () => text,
    lastEventId: () => parser.lastEventId,
    ids,
    payloads: () => delivered().map((event) => JSON.parse(event.data)),
    resets: () => events.filter((event) => event.event === 'herald.reset').map((event) => JSON.parse(event.data)),
    waitFor: async (count) => await until(() => delivered().length >= count, 5_000, `${count} events (have ${delivered().length})`)
  }
}

/** Waits until a new subscription has caught up (subscribed upstream and found its starting point). */
export async function subscribed (subscription: Session): Promise<void> {
  await until(() => !subscription.holding, 5_000, 'subscription to catch up')
}
