import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { STATUS_CODES } from 'node:http'
import { DEFAULT_RETRY_AFTER_SECONDS, NotFoundError, STREAM_REFUSALS } from '../src/errors.js'
import { encodeFrame, encodeOpening } from '../src/sse/encode.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** An event stream route: temporary refusals (STREAM_REFUSALS) are answered in band, as a 200 stream. */
    eventStream?: boolean
  }
}

/** What every error reply looks like; `error` is the status's standard reason phrase. */
export interface ErrorBody {
  statusCode: number
  error: string
  code?: string
  message: string
}

/**
 * The one error handler. Herald's own errors (`HERALD_*`, see src/errors.ts) and any other error with a 4xx
 * status are answered with their status, code and message. Anything else is a bug: logged with its stack at
 * error level and answered with a bare `internal error`, so no detail of the server leaks to the client.
 */
export function errorHandler (error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const statusCode = statusOf(error)
  const code = typeof error.code === 'string' ? error.code : undefined
  const herald = code?.startsWith('HERALD_') === true

  const refusal = herald && request.routeOptions.config.eventStream === true ? STREAM_REFUSALS[code as string] : undefined
  if (refusal !== undefined) return refuseStream(request, reply, refusal.reason, refusal.retryMs, error)
  if (statusCode >= 500 && !herald) {
    request.log.error({ err: error }, 'request failed')
    return send(reply, { statusCode, error: reason(statusCode), message: 'internal error' })
  }
  if (statusCode >= 500) {
    // Expected and operational (Redis away, instance full): worth a warning, not an alert. The cause, if any,
    // says why the broker is away.
    request.log.warn(error.cause === undefined ? { code, statusCode } : { code, statusCode, err: error.cause }, error.message)
  } else {
    // The client's mistake, not the server's: one line without a stack, which would say nothing here.
    request.log.info({ code, statusCode, message: error.message }, 'request rejected')
  }
  if (statusCode === 401) reply.header('www-authenticate', 'Bearer')
  return send(reply, { statusCode, error: reason(statusCode), ...(code === undefined ? {} : { code }), message: error.message })
}

/**
 * A temporary refusal of an event stream, as a stream EventSource retries: 200, the opening every stream has
 * with a `retry:` jittered over 0.5-1.5 times the reason's delay (so refused clients do not come back together),
 * an in-band `herald.unavailable` event `{ reason, retryMs }`, and the end. Logged as the one `stream closed` line.
 */
function refuseStream (request: FastifyRequest, reply: FastifyReply, reason: string, baseMs: number, error: FastifyError): FastifyReply {
  const retryMs = Math.round(baseMs * (0.5 + Math.random()))
  const body = encodeOpening(retryMs) + encodeFrame({ event: 'herald.unavailable', data: JSON.stringify({ reason, retryMs }) })
  const level = (error.statusCode ?? 500) >= 500 ? 'warn' : 'info'
  request.log[level]({ reason: 'refused', refusal: reason, code: error.code, message: error.message, retryMs, durationMs: 0, events: 0, bytes: body.length }, 'stream closed')
  reply.code(200)
    .header('content-type', 'text/event-stream; charset=utf-8')
    .header('cache-control', 'no-cache, no-transform')
    .header('x-accel-buffering', 'no')
  // HTTP/2 has no Connection header (Node drops it with a warning): the stream ends with the body.
  if (request.raw.httpVersionMajor !== 2) reply.header('connection', 'close')
  return reply.send(body)
}

function send (reply: FastifyReply, body: ErrorBody): FastifyReply {
  if (body.statusCode === 503 && !reply.hasHeader('retry-after')) {
    const refusal = STREAM_REFUSALS[body.code ?? '']
    reply.header('retry-after', String(refusal === undefined ? DEFAULT_RETRY_AFTER_SECONDS : Math.ceil(refusal.retryMs / 1000)))
  }
  return reply.code(body.statusCode).send(body)
}

/** The error's own status if it is an error status; anything else (none, 2xx, 3xx, nonsense) is a 500. */
function statusOf (error: FastifyError): number {
  const statusCode = error.statusCode
  return typeof statusCode === 'number' && Number.isInteger(statusCode) && statusCode >= 400 && statusCode <= 599 ? statusCode : 500
}

function reason (statusCode: number): string {
  return STATUS_CODES[statusCode] ?? 'Error'
}

/**
 * Sets the error handler and a not-found handler that throws into it, on the root instance (fastify-plugin).
 * Register it before any route: a route keeps the error handler in force when it is registered.
 */
export default fp(async (fastify) => {
  fastify.setErrorHandler(errorHandler)
  fastify.setNotFoundHandler((request) => {
    throw new NotFoundError(request.method, request.url.split('?')[0] ?? '')
  })
}, { name: 'error-handler' })
