import fp from 'fastify-plugin'
import { Hub } from '../src/hub/hub.js'
import { MemoryTransport } from '../src/transport/memory.js'
import { RedisTransport } from '../src/transport/redis.js'
import type { Transport } from '../src/transport/transport.js'

declare module 'fastify' {
  interface FastifyInstance {
    hub: Hub
  }
}

/** How long a stream may take to flush its last bytes at shutdown before its socket is closed. */
const SHUTDOWN_FLUSH_MS = 1_000

/**
 * Decorates `hub`, the owner of every subscription, over a transport: Redis when REDIS_URL is set, else the
 * embedded memory transport, behind one contract.
 */
export default fp(async (fastify) => {
  const config = fastify.config
  const { publisher, subscriber } = fastify.redis ?? {}
  const transport: Transport = publisher === undefined || subscriber === undefined
    ? new MemoryTransport({ historySize: config.historySize, historyRetentionMs: config.historyRetentionMs, idempotencyTtlMs: config.idempotencyTtlMs })
    : new RedisTransport(publisher, subscriber, {
      prefix: config.redisPrefix,
      historySize: config.historySize,
      historyRetentionMs: config.historyRetentionMs,
      idempotencyTtlMs: config.idempotencyTtlMs,
      onRecoverableError: (error) => fastify.log.warn({ err: error }, 'subscribing again after a Redis reconnect failed; retrying')
    })
  // One warning per outage, not one per subscription: every open stream's catch-up fails while Redis is away.
  let catchUpFailing = false
  const hub = new Hub(transport, {
    maxQueueBytes: config.maxQueueBytes,
    historyTtlMs: config.historyTtlMs,
    heartbeatMs: config.heartbeatMs,
    stallTimeoutMs: config.stallTimeoutMs,
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
  fastify.log.info({ broker: transport.kind }, `using the ${transport.kind} broker`)
  // app.close() waits for open connections: end the streams first, so clients reconnect elsewhere.
  fastify.addHook('preClose', async () => await hub.close(SHUTDOWN_FLUSH_MS))
}, { name: 'hub', dependencies: ['config', 'redis'] })
