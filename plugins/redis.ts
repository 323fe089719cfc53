import fastifyRedis from '@fastify/redis'
import fp from 'fastify-plugin'
import type { Cluster, Redis } from 'ioredis'
import { createRedisClients, detectMode, type ShardAnswer } from '../src/redis-clients.js'
import type { RedisMode } from '../src/redis-topology.js'
import { redisAddress, StartupError } from '../src/startup-error.js'

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

/**
 * How long start-up waits for Redis before it exits saying so. A Redis starting at the same moment (compose
 * starts Herald once Redis is healthy) answers well within it; anything longer is for the orchestrator's restart.
 */
const START_WAIT_MS = 5_000

/** Redis's answers to credentials it does not take. */
const CREDENTIALS_REFUSED = /^(WRONGPASS|NOAUTH|NOPERM)\b|invalid password|AUTH.*(without any password|called without)/i

/**
 * Resolves when the client is ready. Rejects with a StartupError naming REDIS_URL and the address: at once when
 * Redis refuses the credentials (retrying cannot help), or after START_WAIT_MS without a connection.
 */
async function untilReady (client: Redis | Cluster, url: string): Promise<void> {
  const address = redisAddress(url)
  await new Promise<void>((resolve, reject) => {
    let lastError: Error | undefined
    const done = (error?: StartupError): void => {
      clearTimeout(timer)
      client.off('ready', onReady)
      client.off('error', onError)
      if (error === undefined) resolve()
      else reject(error)
    }
    const onReady = (): void => done()
    const onError = (error: Error): void => {
      lastError = error
      if (CREDENTIALS_REFUSED.test(error.message)) {
        done(new StartupError('REDIS_URL', address, `Redis at ${address} refused the credentials (${error.message.split('\n')[0] ?? ''}); check the password (and user) in REDIS_URL`))
      }
    }
    const timer = setTimeout(() => {
      done(new StartupError('REDIS_URL', address, `cannot reach Redis at ${address} within ${START_WAIT_MS / 1000} s (${lastError?.message ?? 'no answer'}); exiting`))
    }, START_WAIT_MS)
    client.on('ready', onReady)
    client.on('error', onError)
    if (client.status === 'ready') done()
  })
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
  let mode: RedisMode
  try {
    mode = await detectMode(clientOptions, AbortSignal.timeout(START_WAIT_MS))
  } catch (error) {
    const address = redisAddress(url)
    const message = (error as Error).message
    const cause = ((error as Error).cause as Error | undefined)?.message
    throw new StartupError('REDIS_URL', address, (error as Error).name === 'TimeoutError'
      ? `cannot reach Redis at ${address} within ${START_WAIT_MS / 1000} s (${cause ?? 'no answer'}); exiting`
      : CREDENTIALS_REFUSED.test(message.replace(/^.*?: Redis refused Herald: /, ''))
        ? `Redis at ${address} refused the credentials (${message.replace(/^.*?: Redis refused Herald: /, '').split('\n')[0] ?? ''}); check the password (and user) in REDIS_URL`
        : message)
  }
  const clients = createRedisClients(clientOptions, mode)
  fastify.decorate('redisTopology', { mode })
  fastify.decorate('redisRunId', clients.runId)
  fastify.log.info({ mode }, `Redis ${mode === 'standalone' ? 'server' : mode}`)

  let closing = false
  // Both at once: start-up waits at most START_WAIT_MS, then says why it cannot go on.
  try {
    await Promise.all([untilReady(clients.publisher, url), untilReady(clients.subscriber, url)])
  } catch (error) {
    clients.publisher.disconnect()
    clients.subscriber.disconnect()
    throw error
  }
  for (const namespace of ['publisher', 'subscriber'] as const) {
    const client = clients[namespace]
    const connection = { connection: namespace, name: `${name}-${namespace}` }
    // Once per drop, and the recovery. ioredis reports every failed reconnect as an 'error': only the first of
    // an outage is logged. A drop without an error (Redis closed the connection) is logged at once with what is
    // known, then the first reconnect tells more: refused (Redis is down or restarting: a second warning), or
    // taken at once (Redis is up and closed this one connection: said on the restored line).
    let down = false
    let closedByRedis = false
    const lost = (): void => {
      down = true
      if (namespace === 'subscriber') fastify.metrics.redisSubscriberDropped()
    }
    const then = namespace === 'subscriber' ? '; streams resume from history once it is back' : ''
    client.on('error', (error: Error) => {
      if (closing) return
      if (closedByRedis) {
        closedByRedis = false
        fastify.log.warn({ ...connection, error: error.message }, `reconnecting the Redis ${namespace} connection fails (${error.message}): Redis is down or restarting; retrying${then}`)
        return
      }
      if (down) return
      lost()
      fastify.log.warn({ err: error, ...connection }, 'Redis connection lost; reconnecting')
    })
    client.on('close', () => {
      if (down || closing) return
      lost()
      closedByRedis = true
      fastify.log.warn(connection, `Redis closed the ${namespace} connection; reconnecting${then}`)
    })
    client.on('ready', () => {
      if (!down) return
      down = false
      fastify.metrics.redisReconnected()
      if (!closedByRedis) {
        fastify.log.info(connection, 'Redis connection restored')
        return
      }
      closedByRedis = false
      fastify.log.info({
        ...connection,
        likelyCause: namespace === 'subscriber'
          ? 'Redis took the reconnect at once, so it is up and closed this connection: CLIENT KILL, the subscriber past client-output-buffer-limit pubsub, or a restart'
          : 'Redis took the reconnect at once, so it is up and closed this connection: CLIENT KILL, its timeout setting, or a restart'
      }, 'Redis connection restored')
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
