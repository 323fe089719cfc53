import { LogController, type FastifyReply, type FastifyRequest } from 'fastify'

/**
 * One log line per request, where Fastify writes two (`incoming request` and `request completed`, both at info):
 * `request completed` with the request, the status and the response time. An event stream is logged as it opens
 * (`incoming request`), as a page's connections are worth seeing while they last; its end has a line of its own
 * (`stream closed`, plugins/event-stream.ts) with why and what it sent. Health probes, every few seconds from
 * each balancer and orchestrator, log at debug. Passed to Fastify as its `logController` (src/server.ts).
 */
export class RequestLog extends LogController {
  override incomingRequest (request: FastifyRequest): void {
    if (isStream(request)) request.log.info({ req: request }, 'incoming request')
  }

  override requestCompleted (error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (error !== null && error !== undefined) {
      reply.log.error({ req: request, res: reply, err: error, responseTime: reply.elapsedTime }, 'request errored')
      return
    }
    if (isStream(request)) return
    const level = request.routeOptions.url?.startsWith('/health') === true ? 'debug' : 'info'
    reply.log[level]({ req: request, res: reply, responseTime: reply.elapsedTime }, 'request completed')
  }
}

const isStream = (request: FastifyRequest): boolean => request.routeOptions.config.eventStream === true
