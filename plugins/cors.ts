import fastifyCors from '@fastify/cors'
import fp from 'fastify-plugin'

const ALLOWED_HEADERS = ['content-type', 'authorization', 'idempotency-key', 'last-event-id']
/** Pages may read when to retry after a 429 or 503; other response headers they need are safelisted. */
const EXPOSED_HEADERS = ['retry-after']

/**
 * CORS from HERALD_CORS_ORIGINS. Listed origins may publish and subscribe with credentials (cookies reach the
 * stream); `*` opens only public streams and health, without credentials: never the publish API, and never a
 * stream with a private topic (a page that holds subscriber tokens belongs in the list).
 */
export default fp(async (fastify) => {
  const origins = fastify.config.corsOrigins
  if (origins !== '*' && origins.length === 0) return
  const authorizer = fastify.authorizer
  const asksForPrivate = (query: unknown): boolean => {
    const topic = (query as Record<string, unknown> | undefined)?.topic
    const topics = typeof topic === 'string' ? [topic] : Array.isArray(topic) ? topic : []
    return topics.some((name) => typeof name === 'string' && authorizer.isPrivate(name))
  }
  await fastify.register(fastifyCors, {
    delegator: (request, callback) => {
      const publishing = (request.url ?? '').startsWith('/v1/events')
      if (origins === '*') {
        callback(null, { origin: !publishing && !asksForPrivate(request.query) && '*', methods: ['GET'], allowedHeaders: ALLOWED_HEADERS })
      } else {
        callback(null, { origin: origins, credentials: true, methods: ['GET', 'POST'], allowedHeaders: ALLOWED_HEADERS, exposedHeaders: EXPOSED_HEADERS, maxAge: 600 })
      }
    }
  })
}, { name: 'cors', dependencies: ['config', 'auth'] })
