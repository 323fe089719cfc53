import fastifyRedis from '@fastify/redis'
import fp from 'fastify-plugin'
import { createRedisClients, detectMode, type ShardAnswer } from '../src/redis-clients.js'
import type { RedisMode } from '../src/redis-topology.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Whether Redis answers a PING within the command timeout, checked at most once per PING_CACHE_MS however
     * often it is asked; undefined without Redis. A stopped or hung Redis keeps its connections open and
     * `ready`: only an answer tells it is there.
     */
    redisAnswers: () => Promise<RedisAnswer | undefined>
    /** How Herald reaches Redis (standalone without Redis too: the memory broker needs no topology). */
    redisTopology: { mode: RedisMode }
    /**
     * The run_id of the Redis server a command on `key` runs on now (a new one after a restart or a failover);
     * undefined without Redis, and while not known yet (see RedisClients.runId in src/redis-clients.ts).
     */
    redisRunId: (key?: string) => string | undefined
  }
}

export interface RedisAnswer {
  ok: boolean
  /** Round trip of the PING, or why there was no answer. */
  latencyMs?: number
  error?: string
  /** Each master that holds slots (one outside a cluster): Redis answers when every one does. */
  shards: ShardAnswer[]
}

/** How long a PING's outcome stands for: health checks from several balancers cost one PING a second. */
const PING_CACHE_MS = 1_000

/**
 * Two Redis connections per process, as @fastify/redis namespaces: `publisher` runs commands (the publish
 * and read scripts), `subscriber` only (S)SUBSCRIBEs. Never a connection per client. On a Redis Cluster each is an
 * ioredis Cluster (see src/redis-clients.ts), on Sentinel a connection to the master the sentinels name.
 * Registered only when REDIS_URL is set; @fastify/redis waits for each to be ready at start.
 */
export default fp(async (fastify) => {
  const url = fastify.config.redisUrl
  if (url === undefined) {
    fastify.decorate('redisAnswers', async () => undefined)
    fastify.decorate('redisTopology', { mode: 'standalone' as const })
    fastify.decorate('redisRunId', () => undefined)
    return
  }
  const name = `herald-${process.pid}`
  const clientOptions = {
    url,
    mode: fastify.config.redisMode,
    tls: fastify.config.redisTls,
    commandTimeoutMs: fastify.config.redisCommandTimeoutMs,
    connectionName: name
  }
  const mode = await detectMode(clientOptions)
  const clients = createRedisClients(clientOptions, mode)
  fastify.decorate('redisTopology', { mode })
  fastify.decorate('redisRunId', clients.runId)
  fastify.log.info({ mode }, `Redis ${mode === 'standalone' ? 'server' : mode}`)

  let closing = false
  for (const namespace of ['publisher', 'subscriber'] as const) {
    const client = clients[namespace]
    const connection = { connection: namespace, name: `${name}-${namespace}` }
    // Once per drop, and the recovery. ioredis reports every failed reconnect as an 'error': only the first of
    // an outage is logged. A drop without an error (Redis closed the connection: CLIENT KILL, or the subscriber
    // past `client-output-buffer-limit pubsub`) is logged from 'close', even when the reconnect succeeds at once.
    let down = false
    const lost = (): void => {
      down = true
      if (namespace === 'subscriber') fastify.metrics.redisSubscriberDropped()
    }
    client.on('error', (error: Error) => {
      if (down || closing) return
      lost()
      fastify.log.warn({ err: error, ...connection }, 'Redis connection lost; reconnecting')
    })
    client.on('close', () => {
      if (down || closing) return
      lost()
      fastify.log.warn(connection, namespace === 'subscriber'
        ? 'Redis closed the subscriber connection (CLIENT KILL, or its pub/sub output buffer limit); reconnecting, then streams resume from history'
        : 'Redis closed the publisher connection; reconnecting')
    })
    client.on('ready', () => {
      if (!down) return
      down = false
      fastify.metrics.redisReconnected()
      fastify.log.info(connection, 'Redis connection restored')
    })
    await fastify.register(fastifyRedis, { namespace, client })
    // Not QUIT: it waits for a live connection, and one that dies meanwhile leaves it pending forever.
    // Nothing is lost by closing at once: publishes have answered and subscriptions have ended.
    fastify.addHook('onClose', async () => {
      closing = true
      client.disconnect()
    })
  }

  let last: { at: number, answer: Promise<RedisAnswer> } | undefined
  let answering = true
  const ping = async (): Promise<RedisAnswer> => {
    const started = performance.now()
    const shards = await clients.pingShards()
    const failed = shards.filter((shard) => !shard.ok)
    const answer: RedisAnswer = failed.length === 0
      ? { ok: true, latencyMs: Math.max(...shards.map((shard) => shard.latencyMs ?? 0)), shards }
      : { ok: false, error: failed.map((shard) => shards.length === 1 ? shard.error : `${shard.node}: ${shard.error ?? 'no answer'}`).join('; '), shards }
    fastify.metrics.redisCommand('ping', performance.now() - started)
    if (answer.ok !== answering) {
      answering = answer.ok
      if (answer.ok) fastify.log.info({ latencyMs: answer.latencyMs }, 'Redis answers PING again')
      else fastify.log.warn({ error: answer.error }, 'Redis does not answer PING; publishes answer 503')
    }
    return answer
  }
  fastify.decorate('redisAnswers', async () => {
    const now = Date.now()
    if (last === undefined || now - last.at >= PING_CACHE_MS) last = { at: now, answer: ping() }
    return await last.answer
  })
}, { name: 'redis', dependencies: ['config', 'metrics'] })
