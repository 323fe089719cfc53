import fp from 'fastify-plugin'
import { MemoryBroker } from '../src/broker/memory.js'
import { RedisBroker } from '../src/broker/redis.js'
import type { Broker } from '../src/broker/types.js'

declare module 'fastify' {
  interface FastifyInstance {
    broker: Broker
  }
}

/** Decorates `broker`: Redis when REDIS_URL is set, else the embedded memory broker, behind one contract. */
export default fp(async (fastify) => {
  const config = fastify.config
  const limits = {
    historySize: config.historySize,
    historyTtlMs: config.historyTtlMs,
    idempotencyTtlMs: config.idempotencyTtlMs,
    maxQueueBytes: config.maxQueueBytes
  }
  const { publisher, subscriber } = fastify.redis ?? {}
  const broker: Broker = publisher === undefined || subscriber === undefined
    ? new MemoryBroker(limits)
    : new RedisBroker(publisher, subscriber, {
      ...limits,
      prefix: config.redisPrefix,
      onRecoverableError: (error) => fastify.log.warn({ err: error }, 'catch-up from Redis history failed; retrying')
    })
  fastify.decorate('broker', broker)
  fastify.log.info({ broker: broker.kind }, `using the ${broker.kind} broker`)
  fastify.addHook('onClose', async () => broker.close())
}, { name: 'broker', dependencies: ['config', 'redis'] })
