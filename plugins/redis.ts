import fastifyRedis from '@fastify/redis'
import fp from 'fastify-plugin'

/**
 * Two Redis connections per process, as @fastify/redis namespaces: `publisher` runs commands (the publish
 * and read scripts), `subscriber` only SUBSCRIBEs. Never a connection per client.
 * Registered only when REDIS_URL is set; @fastify/redis waits for each to be ready and closes them on close.
 */
export default fp(async (fastify) => {
  const url = fastify.config.redisUrl
  if (url === undefined) return
  const connectionName = `herald-${process.pid}`
  await fastify.register(fastifyRedis, {
    namespace: 'publisher',
    url,
    connectionName: `${connectionName}-publisher`,
    // A publish while Redis is away must fail at once (503), never wait in a queue, and a command lost
    // with its connection must not be sent again: the client decides, with an idempotency key.
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 0
  })
  await fastify.register(fastifyRedis, {
    namespace: 'subscriber',
    url,
    connectionName: `${connectionName}-subscriber`,
    // SUBSCRIBEs asked for during an outage wait for the connection; ioredis resubscribes on reconnect.
    maxRetriesPerRequest: null
  })
}, { name: 'redis', dependencies: ['config'] })
