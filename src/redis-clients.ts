import type { ConnectionOptions } from 'node:tls'
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'
import type { RedisTlsConfig } from './config.js'
import { clusterEnabled, keySlot, modeFromSettings, parseSentinelUrl, runIdOf, type RedisMode, type RedisModeSetting } from './redis-topology.js'

export interface RedisClientsOptions {
  /** REDIS_URL: redis://, rediss:// or redis+sentinel://. */
  url: string
  mode: RedisModeSetting
  tls: RedisTlsConfig | undefined
  commandTimeoutMs: number
  /** The connections' CLIENT SETNAME base: `<base>-publisher`, `<base>-subscriber`. */
  connectionName: string
}

/** One master that holds slots (the one server, outside a cluster), and whether it answered a PING. */
export interface ShardAnswer {
  /** host:port */
  node: string
  /** The slots it holds; 16384 outside a cluster. */
  slots: number
  ok: boolean
  latencyMs?: number
  error?: string
}

/**
 * The two connections Herald keeps, of the kind the topology needs: `publisher` runs commands, `subscriber` only
 * (S)SUBSCRIBEs. On a cluster both are ioredis Clusters, the subscriber with one sharded subscriber connection per
 * master (SSUBSCRIBE goes to the slot's owner; messages arrive as 'smessage').
 */
export interface RedisClients {
  mode: RedisMode
  publisher: Redis | Cluster
  subscriber: Redis | Cluster
  /**
   * The run_id of the Redis server a command on `key` runs on now (outside a cluster, the key does not matter): a
   * new value means a restarted server or a failover. Undefined while not known yet: from a (re)connect until the
   * INFO sent at 'ready' answers. That INFO is sent ahead of any other command on the connection, so an answer read
   * after a command's reply is the run_id of the server that ran it, unless the connection changed in between.
   */
  runId: (key?: string) => string | undefined
  /** PINGs every master that holds slots (the one server outside a cluster), each bounded by the command timeout. */
  pingShards: () => Promise<ShardAnswer[]>
}

/** A certificate problem will not go away by retrying: start-up fails at once with what to change. */
const CERTIFICATE_ERRORS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_SIGNATURE_FAILURE'
])

/** How often a cluster client reads the slot map (CLUSTER SLOTS) without being told it changed. */
const SLOTS_REFRESH_MS = 2_000

/** How long the start-up probe waits between attempts while Redis does not answer. */
const PROBE_RETRY_MS = 500

/** The URL with any password hidden, for messages. */
export function shownUrl (url: string): string {
  return url.replace(/\/\/([^@/:]*):[^@/]*@/, '//$1:…@')
}

/** host, port and credentials of a redis:// or rediss:// URL, with the TLS options for rediss://. */
export function nodeOptions (url: string, tls: RedisTlsConfig | undefined): RedisOptions & { host: string, port: number } {
  const parsed = new URL(url)
  const options: RedisOptions & { host: string, port: number } = {
    host: parsed.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: parsed.port === '' ? 6379 : Number(parsed.port)
  }
  if (parsed.username !== '') options.username = decodeURIComponent(parsed.username)
  if (parsed.password !== '') options.password = decodeURIComponent(parsed.password)
  const db = parsed.pathname.replace(/^\//, '')
  if (db !== '') options.db = Number(db)
  if (parsed.protocol === 'rediss:') options.tls = tlsOptions(tls)
  return options
}

function tlsOptions (tls: RedisTlsConfig | undefined): ConnectionOptions {
  const options: ConnectionOptions = {}
  if (tls?.ca !== undefined) options.ca = tls.ca
  if (tls?.cert !== undefined) options.cert = tls.cert
  if (tls?.key !== undefined) options.key = tls.key
  return options
}

/**
 * The mode to run: the URL's scheme or HERALD_REDIS_MODE when they say, else INFO cluster on the URL's server
 * (cluster_enabled:1 is a cluster). Waits while Redis does not answer, as the connections would; fails at once on
 * what retrying cannot fix (a certificate Herald does not trust, a refused client certificate, a refused login).
 */
export async function detectMode (options: Pick<RedisClientsOptions, 'url' | 'mode' | 'tls' | 'connectionName'>, signal?: AbortSignal): Promise<RedisMode> {
  const fixed = modeFromSettings(options.url, options.mode)
  if (fixed !== undefined) return fixed
  for (;;) {
    const probe = new Redis({
      ...nodeOptions(options.url, options.tls),
      connectionName: `${options.connectionName}-probe`,
      lazyConnect: true,
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      connectTimeout: 5_000
    })
    let lastError: Error | undefined
    probe.on('error', (error: Error) => { lastError = error })
    try {
      await probe.connect()
      return clusterEnabled(await probe.info('cluster')) ? 'cluster' : 'standalone'
    } catch (error) {
      lastError ??= error as Error
      const fatal = startupProblem(options.url, lastError, options.tls?.cert !== undefined)
      if (fatal !== undefined) throw new Error(fatal)
    } finally {
      probe.disconnect()
    }
    if (signal?.aborted === true) throw Object.assign(new Error(`no answer: ${lastError?.message ?? 'connection timed out'}`, { cause: lastError }), { name: 'TimeoutError' })
    await new Promise((resolve) => setTimeout(resolve, PROBE_RETRY_MS))
  }
}

/** What to tell the operator when an error at start cannot be fixed by waiting; undefined when it might be. */
export function startupProblem (url: string, error: Error & { code?: string }, clientCertificate = false): string | undefined {
  const where = `REDIS_URL=${JSON.stringify(shownUrl(url))}`
  // OpenSSL's messages end with a line break.
  const message = error.message.trim()
  if (error.code !== undefined && CERTIFICATE_ERRORS.has(error.code)) {
    return `${where}: Herald does not trust the Redis server's TLS certificate (${error.code}: ${message}); ` +
      'set HERALD_REDIS_TLS_CA to the PEM file of the CA that signed it'
  }
  if (error.code?.startsWith('ERR_SSL_') === true || /alert (certificate required|bad certificate|unknown ca)/i.test(message)) {
    return `${where}: the Redis server refused the TLS handshake (${message}); if it asks for a client certificate, ` +
      'set HERALD_REDIS_TLS_CERT and HERALD_REDIS_TLS_KEY to one its CA signed'
  }
  // Under TLS 1.3 a server that wants a client certificate checks it after the handshake: its refusal may reach
  // Herald as a reset of the connection rather than as the alert.
  if (error.code === 'ECONNRESET' && url.startsWith('rediss:') && !clientCertificate) {
    return `${where}: the Redis server reset the TLS connection (${message}); if it asks for a client certificate, ` +
      'set HERALD_REDIS_TLS_CERT and HERALD_REDIS_TLS_KEY to one its CA signed'
  }
  if (/^(WRONGPASS|NOAUTH|NOPERM)/.test(message)) return `${where}: Redis refused Herald: ${message}`
  return undefined
}

/** Builds the publisher and subscriber for a mode; they connect at once, and @fastify/redis waits for 'ready'. */
export function createRedisClients (options: RedisClientsOptions, mode: RedisMode): RedisClients {
  const publisherOptions: RedisOptions = {
    connectionName: `${options.connectionName}-publisher`,
    // A publish while Redis is away must fail at once (503), never wait in a queue, and a command lost
    // with its connection must not be sent again: the client decides, with an idempotency key.
    enableOfflineQueue: false,
    // No auto-pipelining: measured on an idle machine it cut publish-only throughput by ~20% (25k -> 20k/s), its
    // batches keeping commands alive long enough to be promoted out of the young generation.
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 0,
    // A Redis that keeps the connection but does not answer (stopped, hung) fails the command, so a publish
    // answers 503 within about this long instead of hanging.
    commandTimeout: options.commandTimeoutMs
  }
  const subscriberOptions: RedisOptions = {
    connectionName: `${options.connectionName}-subscriber`,
    // SUBSCRIBEs asked for during an outage wait for the connection; ioredis resubscribes on reconnect.
    maxRetriesPerRequest: null
  }
  if (mode === 'cluster') return clusterClients(options, publisherOptions, subscriberOptions)

  let connection: RedisOptions
  if (mode === 'sentinel') {
    const { sentinels, masterName, username, password } = parseSentinelUrl(options.url)
    // failoverDetector: the sentinels' +switch-master ends the connection to a demoted master that is still up.
    connection = { sentinels, name: masterName, role: 'master', failoverDetector: true }
    if (username !== undefined) connection.username = username
    if (password !== undefined) connection.password = password
  } else {
    connection = nodeOptions(options.url, options.tls)
  }
  const publisher = new Redis({ ...connection, ...publisherOptions })
  const subscriber = new Redis({ ...connection, ...subscriberOptions })
  const runId = trackRunId(publisher)
  return {
    mode,
    publisher,
    subscriber,
    runId: () => runId.value,
    pingShards: async () => {
      const node = `${publisher.options.host ?? '?'}:${publisher.options.port ?? '?'}`
      return [{ node: mode === 'sentinel' ? currentAddress(publisher) ?? node : node, slots: 16_384, ...await ping(publisher) }]
    }
  }
}

function clusterClients (options: RedisClientsOptions, publisherOptions: RedisOptions, subscriberOptions: RedisOptions): RedisClients {
  const { host, port, ...credentials } = nodeOptions(options.url, options.tls)
  delete credentials.db
  const clusterOptions = (redisOptions: RedisOptions): ClusterOptions => ({
    redisOptions: { ...credentials, ...redisOptions },
    // Loopback and private networks announce addresses Herald reaches as they are; TLS checks them against the
    // certificates, so the servers' certificates must name the addresses the cluster announces.
    slotsRefreshTimeout: Math.max(1_000, options.commandTimeoutMs),
    // A failover or a reshard is otherwise seen only by the next command that gets MOVED or fails: health and run
    // ids must follow the owners without traffic.
    slotsRefreshInterval: SLOTS_REFRESH_MS,
    enableOfflineQueue: redisOptions.enableOfflineQueue ?? true
  })
  const publisherNodeOptions = { ...publisherOptions }
  // A command to a node Herald has not talked to yet waits for that node's connection, bounded by the command
  // timeout; the cluster's own queue stays off, so nothing waits while the whole cluster is away.
  delete publisherNodeOptions.enableOfflineQueue
  // No ready check: its CLUSTER INFO would be refused by the disabled queue (the cluster is not ready while it
  // runs), and /health/ready asks every master anyway.
  // retryDelayOnFailover 0: ioredis would send a command whose connection closed again to the new owner, and a
  // publish the dead master had already run (and its replica copied) would then be stored twice. It fails (503)
  // instead, as on one Redis; MOVED, ASK, TRYAGAIN and CLUSTERDOWN are still followed, as Redis ran nothing then.
  const publisher = new Cluster([{ host, port }], { ...clusterOptions(publisherNodeOptions), enableOfflineQueue: false, enableReadyCheck: false, retryDelayOnFailover: 0 })
  const subscriber = new Cluster([{ host, port }], { ...clusterOptions(subscriberOptions), shardedSubscribers: true })

  const runIds = new Map<string, TrackedRunId>()
  const watch = (node: Redis): void => {
    const key = nodeKey(node)
    if (!runIds.has(key)) runIds.set(key, trackRunId(node))
  }
  publisher.on('+node', watch)
  // After a failover or a slot migration the owners change: learn the run_id of any owner not asked yet.
  const askOwners = (): void => {
    for (const node of publisher.nodes('master')) {
      watch(node)
      const tracked = runIds.get(nodeKey(node))
      if (tracked === undefined || tracked.value !== undefined) continue
      // A node Herald has sent nothing yet is not connected (ioredis connects cluster nodes lazily).
      if (node.status === 'wait') node.connect().catch(() => {})
      else if (node.status === 'ready') tracked.ask()
    }
  }
  publisher.on('refresh', askOwners)
  publisher.on('ready', askOwners)
  publisher.on('-node', (node: Redis) => {
    runIds.delete(nodeKey(node))
    // A node's connection ended (cluster nodes do not reconnect): its slots may have a new owner already.
    if (publisher.status === 'ready') publisher.refreshSlotsCache()
  })

  return {
    mode: 'cluster',
    publisher,
    subscriber,
    runId: (key) => {
      if (key === undefined) return undefined
      const owner = publisher.slots[keySlot(key)]?.[0]
      return owner === undefined ? undefined : runIds.get(owner)?.value
    },
    pingShards: async () => {
      const slotsByOwner = new Map<string, number>()
      for (const owners of publisher.slots) {
        const owner = owners?.[0]
        if (owner !== undefined) slotsByOwner.set(owner, (slotsByOwner.get(owner) ?? 0) + 1)
      }
      if (slotsByOwner.size === 0) return [{ node: `${host}:${port}`, slots: 0, ok: false, error: 'no slot map from the cluster yet' }]
      const masters = new Map(publisher.nodes('master').map((node) => [nodeKey(node), node]))
      return await Promise.all([...slotsByOwner].sort(([a], [b]) => a.localeCompare(b)).map(async ([node, slots]) => {
        const connection = masters.get(node)
        if (connection === undefined) return { node, slots, ok: false, error: 'no connection to this master' }
        return { node, slots, ...await ping(connection) }
      }))
    }
  }
}

/** host:port as ioredis's Cluster keys its nodes and slots. */
function nodeKey (node: Redis): string {
  return `${node.options.host ?? ''}:${node.options.port ?? ''}`
}

/** The address a Sentinel-managed connection reached, once connected. */
function currentAddress (client: Redis): string | undefined {
  const stream = (client as unknown as { stream?: { remoteAddress?: string, remotePort?: number } }).stream
  return stream?.remoteAddress === undefined ? undefined : `${stream.remoteAddress}:${stream.remotePort ?? ''}`
}

/**
 * Keeps the run_id of the server a connection reaches: forgotten at every (re)connect, asked with INFO server at
 * every 'ready' (the first command the connection runs then). An answer from an earlier connection is dropped.
 */
interface TrackedRunId {
  value: string | undefined
  /** Asks again (an earlier INFO failed, or timed out). */
  ask: () => void
}

function trackRunId (client: Redis): TrackedRunId {
  let generation = 0
  const tracked: TrackedRunId = {
    value: undefined,
    ask: () => {
      const asked = ++generation
      tracked.value = undefined
      client.info('server').then((info) => {
        if (asked === generation) tracked.value = runIdOf(info)
      }, () => {})
    }
  }
  client.on('connect', () => {
    generation++
    tracked.value = undefined
  })
  client.on('close', () => {
    generation++
    tracked.value = undefined
  })
  client.on('ready', tracked.ask)
  if (client.status === 'ready') tracked.ask()
  return tracked
}

async function ping (client: Redis): Promise<Omit<ShardAnswer, 'node' | 'slots'>> {
  const started = performance.now()
  try {
    // The connection's command timeout bounds it.
    await client.ping()
    return { ok: true, latencyMs: Math.round(performance.now() - started) }
  } catch (error) {
    return { ok: false, error: (error as Error).message }
  }
}
