import fastifyRateLimit from '@fastify/rate-limit'
import fp from 'fastify-plugin'
import { RateLimitedError } from '../src/errors.js'

/**
 * Makes @fastify/rate-limit available to routes (none is limited globally); the publish route opts in with
 * HERALD_RATE_LIMIT_PER_MINUTE, keyed by its bearer token, or by the client address without one.
 */
export default fp(async (fastify) => {
  await fastify.register(fastifyRateLimit, {
    global: false,
    // The plugin throws what this returns (after setting Retry-After), so the app's error handler answers it.
    errorResponseBuilder: (_request, context) =>
      new RateLimitedError(context.max, context.after === '1 minute' ? 'minute' : context.after, Math.ceil(context.ttl / 1000))
  })
}, { name: 'rate-limit' })
