import fp from 'fastify-plugin'

/**
 * One log line per request, in place of Fastify's two (`incoming request` and `request completed`, both at info,
 * which `disableRequestLogging` in src/server.ts turns off): `request completed` with the request, the status and
 * the response time. An event stream is logged as it opens (`incoming request`), as a page's connections are
 * worth seeing while they last; its end has a line of its own (`stream closed`, plugins/event-stream.ts) with
 * why and what it sent. Health probes, every few seconds from each balancer and orchestrator, log at debug.
 */
export default fp(async (fastify) => {
  fastify.addHook('onRequest', async (request) => {
    if (request.routeOptions.config.eventStream === true) request.log.info({ req: request }, 'incoming request')
  })
  fastify.addHook('onResponse', async (request, reply) => {
    if (request.routeOptions.config.eventStream === true) return
    const level = request.routeOptions.url?.startsWith('/health') === true ? 'debug' : 'info'
    request.log[level]({ req: request, res: reply, responseTime: reply.elapsedTime }, 'request completed')
  })
}, { name: 'request-log' })
