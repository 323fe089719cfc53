import { Redis, type Cluster } from 'ioredis'
import { after, before } from 'node:test'
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
import { RedisCluster } from './redis-cluster.js'
import { RedisServer } from './redis-server.js'

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

/** The brokers a test file runs Herald on; a file that also starts a Cluster runs on ALL_BROKERS. */
export const BROKERS = ['memory', 'redis'] as const
export const ALL_BROKERS = ['memory', 'redis', 'cluster'] as const
export type Broker = typeof ALL_BROKERS[number]

export interface BrokerEnvironment {
  /** The file's redis-server (started by its `before` hook). */
  readonly redis: RedisServer
  /** A client of it, for checks behind Herald's back. */
  readonly admin: Redis
  /** The file's Redis Cluster, when it asked for one. */
  readonly cluster: RedisCluster
  /** The admin client of a Redis broker: the server's, or the cluster's (which routes each key to its master). */
  adminOf: (broker: Exclude<Broker, 'memory'>) => Redis | Cluster
  /** A key prefix no other test of the run uses, so each test sees only its own keys. */
  prefix: () => string
  /** Herald's environment for a broker (on Redis with a new prefix), and that prefix. */
  env: (broker: Broker) => { env: Record<string, string>, prefix: string }
}

/**
 * A real redis-server for a test file (and with `cluster`, a real 3-master Redis Cluster without replicas, as nothing
 * fails over here), started before its tests and stopped after them, with admin clients, and Herald's environment
 * for each broker. `name` starts the file's key prefixes.
 */
export function brokerEnvironment (name: string, options: { cluster?: boolean } = {}): BrokerEnvironment {
  let redis: RedisServer | undefined
  let admin: Redis | undefined
  let cluster: RedisCluster | undefined
  let clusterAdmin: Cluster | undefined
  let prefixes = 0
  before(async () => {
    [redis, cluster] = await Promise.all([RedisServer.start(), options.cluster === true ? RedisCluster.start({ replicas: 0 }) : undefined])
    admin = redis.client()
    clusterAdmin = await cluster?.admin()
  })
  after(async () => {
    admin?.disconnect()
    await Promise.all([redis?.stop(), cluster?.stop()])
  })
  const started = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('the file\'s Redis deployments are started by its before hook (a Cluster only when asked for): use them in tests')
    return value
  }
  const environment: BrokerEnvironment = {
    get redis () { return started(redis) },
    get admin () { return started(admin) },
    get cluster () { return started(cluster) },
    adminOf: (broker) => broker === 'redis' ? started(admin) : started(clusterAdmin),
    prefix: () => `${name}${process.pid}-${++prefixes}:`,
    env: (broker) => {
      const prefix = environment.prefix()
      const env: Record<string, string> = broker === 'memory' ? {} : { REDIS_URL: broker === 'redis' ? environment.redis.url : environment.cluster.url, HERALD_REDIS_PREFIX: prefix }
      return { env, prefix }
    }
  }
  return environment
}
