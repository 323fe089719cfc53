import type { FastifyReply } from 'fastify'
import fp from 'fastify-plugin'
import type { OutgoingHttpHeaders } from 'node:http'
import { constants, type Http2ServerResponse } from 'node:http2'
import type { Socket } from 'node:net'
import type { Writable } from 'node:stream'
import { TLSSocket } from 'node:tls'
import { SlowConsumerError, StalledClientError, type Session } from '../src/hub/session.js'
import { encodeOpening } from '../src/sse/encode.js'

declare module 'fastify' {
  interface FastifyReply {
    /**
     * Answers with a Server-Sent Events stream of a subscription: the head, the opening lines, the
     * subscription piped into the connection, the end at a token's expiry, cleanup, and one log line at close.
     */
    eventStream: (subscription: Session, options?: EventStreamOptions) => FastifyReply
  }
}

export interface EventStreamOptions {
  /** Milliseconds since the epoch when the token that opened the stream expires. */
  expiresAt?: number | undefined
}

/** Timers hold at most 2^31-1 ms (about 24.8 days). */
const MAX_TIMER_MS = 2_147_483_647

/**
 * The wiring of every event stream, in one place. After the head, bytes go to the connection itself, not
 * through the response object. Over HTTP/1.1 that is the socket: no chunked framing and no cork/uncork per
 * write, which took about 30% of the CPU per delivery in the fan-out profile; the body then runs until the
 * connection closes (`Connection: close`), as an event stream does anyway. Over HTTP/2 it is the request's
 * stream, one of many on the connection: ending or cutting it (RST_STREAM) leaves the others alone.
 */
export default fp(async (fastify) => {
  // Headers reach the client only with the first bytes: the opening goes at once.
  const opening = Buffer.from(encodeOpening(fastify.config.retryMs))

  fastify.decorateReply('eventStream', function (this: FastifyReply, subscription: Session, options: EventStreamOptions = {}) {
    const reply = this
    const request = reply.request
    // Hijacked replies skip Fastify's header handling: carry over what hooks set (CORS, for one).
    reply.hijack()
    const raw = reply.raw
    const connection = request.raw.httpVersionMajor === 2 ? http2Stream(raw) : http1Socket(request.raw.socket, raw)
    const headers: OutgoingHttpHeaders = {}
    for (const [name, value] of Object.entries(reply.getHeaders())) if (value !== undefined) headers[name] = value
    raw.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
      ...connection.headers
    })
    raw.flushHeaders()
    const sink = connection.sink

    // A stream lives no longer than the token that opened it: the client reconnects with a fresh one.
    const expiry = options.expiresAt === undefined ? undefined : endAtExpiry(subscription, options.expiresAt)

    // `on`, not `once`: each fires once anyway, and `once` costs a wrapper per listener per connection.
    sink.on('error', ignore)
    // The connection closes when the client leaves, or after the stream ended (pipe ends it).
    sink.on('close', () => subscription.close('client-closed'))
    subscription.on('error', ignore)
    subscription.on('close', () => {
      if (expiry !== undefined) clearTimeout(expiry.timer)
      const error = subscription.errored
      const dropped = error instanceof SlowConsumerError || error instanceof StalledClientError
      // Ended normally, pipe() ends the connection after its last bytes; otherwise cut it at once. A slow or
      // stalled client gets a reset: a plain close would leave its unsent bytes in the kernel's buffer (up to the
      // kernel's send buffer, ~4 MB) for as long as it holds on.
      if (dropped) connection.reset()
      else if (!subscription.readableEnded) connection.destroy()
      const fields: Record<string, unknown> = {
        reason: subscription.endReason ?? (error === null ? 'client-closed' : 'failed'),
        durationMs: Date.now() - subscription.openedAt,
        events: subscription.events,
        bytes: subscription.bytes
      }
      if (error instanceof SlowConsumerError) {
        fields.queuedBytes = error.queuedBytes
        fields.limit = error.limit
      } else if (error instanceof StalledClientError) {
        fields.queuedBytes = error.queuedBytes
        fields.stalledMs = error.stalledMs
      } else if (error !== null) {
        fields.err = error
      }
      request.log[error === null || dropped ? 'info' : 'warn'](fields, 'stream closed')
    })
    subscription.connect(sink, opening)
    return reply
  })
}, { name: 'event-stream', dependencies: ['config'] })

/** Where a stream's bytes go after the head, and how it is cut short. */
interface StreamConnection {
  sink: Writable
  /** Response headers only this protocol has. */
  headers: OutgoingHttpHeaders
  /** Ends it at once, whatever is unsent, and frees what waits for the client. */
  reset: () => void
  /** Ends it at once. */
  destroy: () => void
}

function http1Socket (socket: Socket, response: { useChunkedEncodingByDefault: boolean }): StreamConnection {
  response.useChunkedEncodingByDefault = false
  socket.setNoDelay(true)
  return {
    sink: socket,
    headers: { connection: 'close' },
    reset: () => resetSocket(socket),
    destroy: () => socket.destroy()
  }
}

/**
 * An HTTP/2 stream is cut with RST_STREAM (CANCEL): nghttp2 drops what is queued for it, and the session and
 * its other streams (the same browser's other tabs) go on. Its writableLength counts every byte the peer has
 * not taken yet, flow control included, so the byte cap and the stall check work as on a socket.
 */
function http2Stream (response: unknown): StreamConnection {
  const stream = (response as Http2ServerResponse).stream
  const cancel = (): void => { stream.close(constants.NGHTTP2_CANCEL) }
  return { sink: stream, headers: {}, reset: cancel, destroy: cancel }
}

/**
 * Resets a TCP connection, so the kernel drops its unsent bytes at once. A TLS socket has no reset of its own
 * (resetAndDestroy throws on its handle): the TCP socket under it, which Node keeps as `_parent`, is reset, and
 * the TLS socket closes with it.
 */
function resetSocket (socket: Socket): void {
  const tcp = socket instanceof TLSSocket ? (socket as TLSSocket & { _parent?: Socket })._parent : socket
  if (tcp === undefined) socket.destroy()
  else tcp.resetAndDestroy()
}

function ignore (): void {}

/** Finishes a subscription when a token expires; timers hold at most MAX_TIMER_MS, so a long wait is taken in steps. */
function endAtExpiry (subscription: Session, expiresAt: number): { timer: NodeJS.Timeout } {
  const expiry = { timer: undefined as unknown as NodeJS.Timeout }
  const wait = (): void => {
    expiry.timer = setTimeout(() => {
      if (Date.now() < expiresAt) wait()
      else subscription.finish('token-expired')
    }, Math.min(Math.max(0, expiresAt - Date.now()), MAX_TIMER_MS)).unref()
  }
  wait()
  return expiry
}
