import type { FastifyError, FastifyInstance } from 'fastify'
import type { Config } from './config.js'
import configPlugin from '../plugins/config.js'
import authPlugin from '../plugins/auth.js'
import corsPlugin from '../plugins/cors.js'
import rateLimitPlugin from '../plugins/rate-limit.js'
import redisPlugin from '../plugins/redis.js'
import securityHeadersPlugin from '../plugins/security-headers.js'
import hubPlugin from '../plugins/hub.js'
import eventStreamPlugin from '../plugins/event-stream.js'
import staticPlugin from '../plugins/static.js'
import eventsRoute from '../routes/events.js'
import streamRoute from '../routes/stream.js'
import healthRoute from '../routes/health.js'

export interface AppOptions {
  config: Config
}

/** The application: plugins first, then the error and not-found handlers, then routes. */
export default async function app (fastify: FastifyInstance, options: AppOptions): Promise<void> {
  // Publishing takes JSON only: any other content type is a 415, not a string body that fails later.
  fastify.removeContentTypeParser('text/plain')

  await fastify.register(configPlugin, { config: options.config })
  await fastify.register(securityHeadersPlugin)
  await fastify.register(authPlugin)
  await fastify.register(corsPlugin)
  await fastify.register(rateLimitPlugin)
  await fastify.register(redisPlugin)
  await fastify.register(hubPlugin)
  await fastify.register(eventStreamPlugin)
  await fastify.register(staticPlugin)

  // Handlers first: route plugins take the error handler in force when they are registered.
  fastify.setErrorHandler((error: FastifyError, request, reply) => {
    if (error.code === 'HERALD_BROKER_UNAVAILABLE') {
      request.log.warn({ err: error.cause ?? error }, error.message)
      return reply.code(503).header('retry-after', '1').send({
        statusCode: 503, error: 'Service Unavailable', code: 'HERALD_BROKER_UNAVAILABLE', message: error.message
      })
    }
    const statusCode = error.statusCode ?? 500
    if (statusCode >= 500 && !(error.code ?? '').startsWith('HERALD_')) {
      request.log.error({ err: error }, 'request failed')
      return reply.code(statusCode).send({ statusCode, error: 'Internal Server Error', message: 'internal error' })
    }
    request.log.info({ err: error }, 'request rejected')
    if (statusCode === 401) reply.header('www-authenticate', 'Bearer')
    return reply.code(statusCode).send({ statusCode, error: httpError(statusCode), code: error.code, message: error.message })
  })

  fastify.setNotFoundHandler((request, reply) => {
    return reply.code(404).send({
      statusCode: 404, error: 'Not Found', message: `no route for ${request.method} ${request.url.split('?')[0]}`
    })
  })

  await fastify.register(eventsRoute)
  await fastify.register(streamRoute)
  await fastify.register(healthRoute)
}

function httpError (statusCode: number): string {
  return ({ 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 413: 'Payload Too Large', 415: 'Unsupported Media Type', 429: 'Too Many Requests', 503: 'Service Unavailable' } as Record<number, string>)[statusCode] ?? 'Error'
}
