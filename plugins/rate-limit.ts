import fastifyRateLimit from '@fastify/rate-limit'
import fp from 'fastify-plugin'

/**
 * Makes @fastify/rate-limit available to routes (none is limited globally); the publish route opts in with
 * HERALD_RATE_LIMIT_PER_MINUTE, keyed by its bearer token, or by the client address without one.
 */
export default fp(async (fastify) => {
  await fastify.register(fastifyRateLimit, {
    global: false,
    errorResponseBuilder: (_request, context) => ({
      statusCode: context.statusCode,
      error: 'Too Many Requests',
      code: 'HERALD_RATE_LIMITED',
      message: `at most ${context.max} publishes per ${context.after === '1 minute' ? 'minute' : context.after}; retry in ${Math.ceil(context.ttl / 1000)} s`
    })
  })
}, { name: 'rate-limit' })
