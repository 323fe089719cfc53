import type { FastifyBaseLogger, FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { STATUS_CODES } from 'node:http'
import { DEFAULT_RETRY_AFTER_SECONDS, NotFoundError, STREAM_REFUSALS } from '../src/errors.js'
import { UNAVAILABLE_EVENT, type UnavailableNotice, type UnavailableReason } from '../src/protocol.js'
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
export function errorHandler (error: FastifyError, request: FastifyRequest, reply: FastifyReply, outages = new OutageLog()): FastifyReply {
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
    // Expected and operational (Redis away, instance full): worth a warning, not an alert, once per outage.
    outages.refused(request, code as string, statusCode, error)
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
function refuseStream (request: FastifyRequest, reply: FastifyReply, reason: UnavailableReason, baseMs: number, error: FastifyError): FastifyReply {
  const retryMs = Math.round(baseMs * (0.5 + Math.random()))
  const body = encodeOpening(retryMs) + encodeFrame({ event: UNAVAILABLE_EVENT, data: JSON.stringify({ reason, retryMs } satisfies UnavailableNotice) })
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
 * Operational 5xx answers (HERALD_* codes, such as a publish while Redis is away) come in runs: every request
 * gets one until the cause is gone. A run is logged at its first answer (warn, with the cause's message, no
 * stack), then only counted, and summed up (info, with the count and duration) when a route that gave one
 * answers below 500 again, or at close.
 */
export class OutageLog {
  private readonly open = new Map<string, { statusCode: number, routes: Set<string>, since: number, count: number }>()

  get active (): boolean {
    return this.open.size > 0
  }

  refused (request: FastifyRequest, code: string, statusCode: number, error: FastifyError): void {
    const route = request.routeOptions.url ?? ''
    const outage = this.open.get(code)
    if (outage !== undefined) {
      outage.count++
      outage.routes.add(route)
      return
    }
    this.open.set(code, { statusCode, routes: new Set([route]), since: Date.now(), count: 1 })
    const cause = error.cause instanceof Error ? error.cause.message : undefined
    request.log.warn({ code, statusCode, ...(cause === undefined ? {} : { cause }) },
      `${error.message}${cause === undefined ? '' : ` (${cause})`}; answering ${statusCode} ${code} until it is fixed: logged once, counted until then`)
  }

  /** A reply below 500: ends the runs that its route was part of. */
  answered (request: FastifyRequest): void {
    const route = request.routeOptions.url ?? ''
    for (const [code, outage] of this.open) {
      if (outage.routes.has(route)) this.end(request.log, code, 'answering again')
    }
  }

  /** Sums up every run still open (at close). */
  endAll (log: FastifyBaseLogger): void {
    for (const code of [...this.open.keys()]) this.end(log, code, 'still so at close')
  }

  private end (log: FastifyBaseLogger, code: string, how: string): void {
    const outage = this.open.get(code)
    if (outage === undefined) return
    this.open.delete(code)
    const durationMs = Date.now() - outage.since
    log.info({ code, statusCode: outage.statusCode, count: outage.count, durationMs },
      `${code}: ${outage.count} answer(s) ${outage.statusCode} over ${durationMs} ms; ${how}`)
  }
}

/**
 * Sets the error handler and a not-found handler that throws into it, on the root instance (fastify-plugin).
 * Register it before any route: a route keeps the error handler in force when it is registered.
 */
export default fp(async (fastify) => {
  const outages = new OutageLog()
  fastify.setErrorHandler((error: FastifyError, request, reply) => errorHandler(error, request, reply, outages))
  fastify.addHook('onResponse', (request, reply, done) => {
    if (outages.active && reply.statusCode < 500) outages.answered(request)
    done()
  })
  fastify.addHook('onClose', async () => outages.endAll(fastify.log))
  fastify.setNotFoundHandler((request) => {
    throw new NotFoundError(request.method, request.url.split('?')[0] ?? '')
  })
}, { name: 'error-handler' })
