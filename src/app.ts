import type { FastifyInstance } from 'fastify'
import type { Config } from './config.js'
import configPlugin from '../plugins/config.js'
import errorHandlerPlugin from '../plugins/error-handler.js'
import authPlugin from '../plugins/auth.js'
import corsPlugin from '../plugins/cors.js'
import publishQuotaPlugin from '../plugins/publish-quota.js'
import metricsPlugin from '../plugins/metrics.js'
import redisPlugin from '../plugins/redis.js'
import securityHeadersPlugin from '../plugins/security-headers.js'
import hubPlugin from '../plugins/hub.js'
import eventStreamPlugin from '../plugins/event-stream.js'
import staticPlugin from '../plugins/static.js'
import openapiPlugin from '../plugins/openapi.js'
import eventsRoute from '../routes/events.js'
import eventsBatchRoute from '../routes/events-batch.js'
import streamRoute from '../routes/stream.js'
import healthRoute from '../routes/health.js'
import statsRoute from '../routes/stats.js'

export interface AppOptions {
  config: Config
}

/** The application: the error and not-found handlers, then plugins, then routes. */
export default async function app (fastify: FastifyInstance, options: AppOptions): Promise<void> {
  // Publishing takes JSON only: any other content type is a 415, not a string body that fails later.
  fastify.removeContentTypeParser('text/plain')

  // Handlers first: a route keeps the error handler in force when it is registered, and @fastify/static
  // registers its routes as soon as it is registered itself.
  await fastify.register(errorHandlerPlugin)
  await fastify.register(configPlugin, { config: options.config })
  await fastify.register(securityHeadersPlugin)
  await fastify.register(authPlugin)
  await fastify.register(corsPlugin)
  await fastify.register(publishQuotaPlugin)
  await fastify.register(metricsPlugin)
  await fastify.register(redisPlugin)
  await fastify.register(hubPlugin)
  await fastify.register(eventStreamPlugin)
  await fastify.register(staticPlugin)
  // Before the routes: it documents each route as it is added.
  await fastify.register(openapiPlugin)

  await fastify.register(eventsRoute)
  await fastify.register(eventsBatchRoute)
  await fastify.register(streamRoute)
  await fastify.register(healthRoute)
  await fastify.register(statsRoute)
}
