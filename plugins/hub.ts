import type { FastifyBaseLogger } from 'fastify'
import fp from 'fastify-plugin'
import { Hub } from '../src/hub/hub.js'
import { MemoryTransport } from '../src/transport/memory.js'
import { RedisTransport } from '../src/transport/redis.js'
import type { Transport } from '../src/transport/transport.js'

declare module 'fastify' {
  interface FastifyInstance {
    hub: Hub
    /**
     * Drains the instance before it closes: not ready from now on, new streams refused retryably, open ones ended
     * spread over HERALD_DRAIN_MS with a short `retry:`, publishes served throughout; resolves when the window is
     * over. Then `close()`.
     */
    drain: () => Promise<void>
  }
}

/** How often, at most, dropped foreign messages are logged while they keep coming. */
const FOREIGN_LOG_INTERVAL_MS = 10_000

/**
 * Logs messages on Herald channels that Herald did not write: the first at once, then at most one line per
 * FOREIGN_LOG_INTERVAL_MS with how many came meanwhile, so a flood of them cannot flood the log.
 */
function foreignMessageLog (log: FastifyBaseLogger): { note: (channel: string, problem: string) => void } {
  let loggedAt = -Infinity
  let unlogged = 0
  return {
    note: (channel, problem) => {
      unlogged++
      const now = Date.now()
      if (now - loggedAt < FOREIGN_LOG_INTERVAL_MS) return
      loggedAt = now
      log.warn({ channel, problem, dropped: unlogged }, 'dropped a message on a Herald channel that Herald did not write (another Redis client published there)')
      unlogged = 0
    }
  }
}

/** How long a stream may take to flush its last bytes at shutdown before its socket is closed. */
const SHUTDOWN_FLUSH_MS = 1_000
/** The longest `retry:` a drained stream gets: its client should come back soon, to another instance. */
const DRAIN_RETRY_MS = 1_000

/**
 * Decorates `hub`, the owner of every subscription, over a transport: Redis when REDIS_URL is set, else the
 * embedded memory transport, behind one contract.
 */
export default fp(async (fastify) => {
  const config = fastify.config
  const { publisher, subscriber } = fastify.redis ?? {}
  const foreignMessages = foreignMessageLog(fastify.log)
  const transport: Transport = publisher === undefined || subscriber === undefined
    ? new MemoryTransport({ historySize: config.historySize, historyRetentionMs: config.historyRetentionMs, idempotencyTtlMs: config.idempotencyTtlMs })
    : new RedisTransport(publisher, subscriber, {
      prefix: config.redisPrefix,
      historySize: config.historySize,
      historyRetentionMs: config.historyRetentionMs,
      idempotencyTtlMs: config.idempotencyTtlMs,
      onRecoverableError: (error) => fastify.log.warn({ err: error }, 'subscribing again after a Redis reconnect failed; retrying'),
      onCommand: (command, milliseconds) => fastify.metrics.redisCommand(command, milliseconds),
      onForeignMessage: (channel, problem) => {
        fastify.metrics.redisForeignMessage()
        foreignMessages.note(channel, problem)
      }
    })
  if (transport instanceof RedisTransport) await transport.load()
  // One warning per outage, not one per subscription: every open stream's catch-up fails while Redis is away.
  let catchUpFailing = false
  const hub = new Hub(transport, {
    maxQueueBytes: config.maxQueueBytes,
    historyTtlMs: config.historyTtlMs,
    heartbeatMs: config.heartbeatMs,
    stallTimeoutMs: config.stallTimeoutMs,
    onDispatch: (event) => fastify.metrics.dispatched(event.time),
    metrics: fastify.metrics.hub,
    onCatchUpError: (error) => {
      if (catchUpFailing) return
      catchUpFailing = true
      fastify.log.warn({ err: error }, 'catch-up from history failed; retrying (logged once until one succeeds)')
    },
    onCatchUpDone: () => {
      if (!catchUpFailing) return
      catchUpFailing = false
      fastify.log.info('catch-up from history works again')
    }
  })
  fastify.decorate('hub', hub)
  fastify.decorate('drain', async () => {
    const { drainMs, retryMs } = config
    fastify.log.info({ drainMs, streams: hub.streamCount }, 'draining: not ready, refusing new streams, ending open ones')
    const startedAt = Date.now()
    // The whole window even without streams: balancers need a few health checks to see the instance is not
    // ready, and publishes sent meanwhile must still succeed.
    const window = new Promise((resolve) => setTimeout(resolve, drainMs).unref())
    await Promise.all([hub.drain(drainMs, Math.min(retryMs, DRAIN_RETRY_MS)), window])
    fastify.log.info({ durationMs: Date.now() - startedAt, streams: hub.streamCount }, 'drained')
  })
  fastify.log.info({ broker: transport.kind }, `using the ${transport.kind} broker`)
  // While draining, every reply closes its connection: a balancer's idle keep-alive connection would otherwise be
  // closed under it at exit, just as it sends a publish there (nginx answers that 502 and never resends a POST).
  // (HTTP/2 has no Connection header: its connections end with a GOAWAY at close.)
  fastify.addHook('onRequest', async (request, reply) => {
    if (hub.draining && request.raw.httpVersionMajor < 2) reply.header('connection', 'close')
  })
  // app.close() waits for open connections: end the streams first, so clients reconnect elsewhere.
  fastify.addHook('preClose', async () => await hub.close(SHUTDOWN_FLUSH_MS))
}, { name: 'hub', dependencies: ['config', 'metrics', 'redis'] })
