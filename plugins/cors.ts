import fastifyCors from '@fastify/cors'
import fp from 'fastify-plugin'

const ALLOWED_HEADERS = ['content-type', 'authorization', 'idempotency-key', 'last-event-id']

/**
 * CORS from HERALD_CORS_ORIGINS. Listed origins may publish and subscribe with credentials (cookies reach the
 * stream); `*` opens only the streams and health, without credentials, and never the publish API.
 */
export default fp(async (fastify) => {
  const origins = fastify.config.corsOrigins
  if (origins !== '*' && origins.length === 0) return
  await fastify.register(fastifyCors, {
    delegator: (request, callback) => {
      const publishing = (request.url ?? '').startsWith('/v1/events')
      if (origins === '*') {
        callback(null, { origin: !publishing && '*', methods: ['GET'], allowedHeaders: ALLOWED_HEADERS })
      } else {
        callback(null, { origin: origins, credentials: true, methods: ['GET', 'POST'], allowedHeaders: ALLOWED_HEADERS, maxAge: 600 })
      }
    }
  })
}, { name: 'cors', dependencies: ['config'] })
