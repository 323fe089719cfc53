import { TypeBoxValidatorCompiler } from '@fastify/type-provider-typebox'
import { Compile } from 'typebox/compile'
import closeWithGrace from 'close-with-grace'
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifySchemaValidationError } from 'fastify'
import type { FastifyValidationResult } from 'fastify/types/schema.js'
import fp from 'fastify-plugin'
import { createRequire } from 'node:module'
import type { IncomingMessage } from 'node:http'
import { constants, type Http2SecureServer, type Http2Session, type ServerHttp2Stream } from 'node:http2'
import type { Socket } from 'node:net'
import { pathToFileURL } from 'node:url'
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino'
import { RequestLog } from '../plugins/request-log.js'
import app from './app.js'
import { ConfigError, EnvSchema, insecureBindRefusal, loadConfig, type Config } from './config.js'
import { processOpenFileLimit, socketCap } from './open-file-limit.js'
import { listenRefusal, StartupError } from './startup-error.js'
import { unknownSettings } from './unknown-settings.js'

/** How long an idle keep-alive connection (HTTP/1.1) or HTTP/2 connection stays open. */
const IDLE_CONNECTION_MS = 72_000
/** Streams one HTTP/2 connection may have open at once. */
const HTTP2_MAX_CONCURRENT_STREAMS = 256
/** Invalid frames an HTTP/2 connection may send before Node closes it. */
const HTTP2_MAX_INVALID_FRAMES = 100
/**
 * Streams an HTTP/2 connection may reset within RAPID_RESET_WINDOW_MS of opening them, per window, before it is
 * cut (rapid reset, CVE-2023-44487: each stream costs Herald a request, the reset costs the client nothing).
 */
const RAPID_RESET_LIMIT = 100
const RAPID_RESET_WINDOW_MS = 10_000
/** How often, at most, closed HTTP/2 sessions are logged (with a count since the last line). */
const HTTP2_CLOSE_LOG_INTERVAL_MS = 10_000
/** How long close() lets connections finish before the ones left are reset: the hub's flush time for streams. */
const CLOSE_FLUSH_MS = 1_000
/** How long a destroyed HTTP/2 session's socket may take to flush and close before its TCP connection is reset. */
const SESSION_CLOSE_GRACE_MS = 1_000

/**
 * Builds the Fastify instance and registers the app; the caller listens. Tests use this too, and pass their own
 * logger (from `createLogger` with a destination) to read what Herald logs. With a certificate (HERALD_TLS_*) it
 * serves HTTPS: HTTP/2, and HTTP/1.1 for clients that do not offer h2 (ALPN).
 */
export async function createServer (config: Config, logger: FastifyBaseLogger = createLogger(config)): Promise<FastifyInstance> {
  const options = {
    loggerInstance: logger,
    logController: new RequestLog(),
    bodyLimit: config.maxBodyBytes,
    // SSE responses are long-lived: no timeout may cut them, and close() ends them in preClose.
    connectionTimeout: 0,
    requestTimeout: config.requestTimeoutMs,
    keepAliveTimeout: IDLE_CONNECTION_MS,
    // Requests that come while the server closes are answered by the routes: a stream gets the retryable
    // refusal (the hub is draining), which EventSource follows, where Fastify's plain 503 would end it for good.
    return503OnClosing: false,
    trustProxy: config.trustProxy
  }
  const server = config.tls === undefined
    ? Fastify({ ...options, http: http1Timeouts(config) })
    : Fastify({
      ...options,
      http2: true,
      // Herald times sessions itself (limitHttp2): Fastify's handler closes gracefully, which waits for the peer.
      http2SessionTimeout: 0,
      https: {
        ...config.tls,
        allowHTTP1: true,
        handshakeTimeout: config.headersTimeoutMs,
        noDelay: true,
        // Bounds on what one connection may cost (Node's defaults: 1000 invalid frames, unlimited concurrent
        // streams). Refused streams past maxConcurrentStreams count towards maxSessionRejectedStreams (100), past
        // which Node closes the session. A browser opens one stream per EventSource and request.
        settings: { maxConcurrentStreams: HTTP2_MAX_CONCURRENT_STREAMS },
        maxSessionInvalidFrames: HTTP2_MAX_INVALID_FRAMES
      }
    }) as unknown as FastifyInstance
  limitSockets(server, config)
  if (config.tls !== undefined) limitHttp2(server, config)
  server.setValidatorCompiler((route) => route.httpPart === 'headers' ? checkHeaders(route.schema) : TypeBoxValidatorCompiler(route))
  // The app's decorators (config, hub) and handlers belong to the root instance, as in fastify/demo.
  await server.register(fp(app), { config })
  if (config.tls !== undefined) closeHttp2Sessions(server)
  resetAtClose(server)
  return server
}

/**
 * app.close() waits for every connection to close, and one whose client stopped reading never does: its last
 * bytes (or its FIN) wait in the kernel, and its stream has already left the hub (a drained one, or one ended
 * normally). CLOSE_FLUSH_MS after close begins (the hub's flush time for open streams), every TCP connection
 * still open is reset, HTTP/1.1 and TLS (HTTP/2 and HTTP/1.1) alike: closing never takes longer, and the kernel
 * frees what waited for those clients.
 */
function resetAtClose (server: FastifyInstance): void {
  const sockets = new Set<Socket>()
  server.server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  server.addHook('preClose', (done) => {
    setTimeout(() => {
      if (sockets.size === 0) return
      server.log.info({ connections: sockets.size, afterMs: CLOSE_FLUSH_MS }, `closing: reset ${sockets.size} connection(s) still open ${CLOSE_FLUSH_MS} ms after close began (clients that stopped reading)`)
      for (const socket of sockets) resetTcp(socket)
    }, CLOSE_FLUSH_MS).unref()
    done()
  })
}

/**
 * These bound receiving a request only, never the response. Node checks them every connectionsCheckingInterval
 * (30 s by default): check often enough that they hold at their values.
 */
function http1Timeouts (config: Config): { headersTimeout: number, requestTimeout: number, connectionsCheckingInterval: number } {
  return { headersTimeout: config.headersTimeoutMs, requestTimeout: config.requestTimeoutMs, connectionsCheckingInterval: Math.min(1_000, config.headersTimeoutMs) }
}

/** How often, at most, the warning about dropped connections is repeated while connections keep coming. */
const DROP_LOG_INTERVAL_MS = 10_000

/**
 * Caps open sockets below the file descriptor limit (Node closes new ones past `maxConnections` and emits
 * 'drop'), says so in the log, and closes a connection that sends nothing: Node's headersTimeout starts only with
 * a request's first byte, so without this an idle connection would hold its descriptor forever. Over TLS the
 * count is of TCP connections too (one per HTTP/2 client, however many streams it carries), and the timeout
 * starts once the handshake is done (the handshake itself has `handshakeTimeout`).
 * A HERALD_MAX_SOCKETS at or above the process's open-file limit would never be reached (descriptors run out
 * first, and Node then closes new connections without a word): the cap is lowered below the limit, and said at start.
 */
function limitSockets (server: FastifyInstance, config: Config): void {
  const http = server.server
  const openFiles = processOpenFileLimit()
  const maxSockets = socketCap(config.maxSockets, openFiles)
  // Not a warning: nothing is wrong once the cap is lowered; reaching it is the warning. Info only when
  // HERALD_MAX_SOCKETS was set: on a default host (open-file limit at or below the default cap) it would be said
  // at every start.
  if (maxSockets < config.maxSockets) {
    server.log[config.setVariables.has('HERALD_MAX_SOCKETS') ? 'info' : 'debug']({ maxSockets: config.maxSockets, openFileLimit: openFiles, cap: maxSockets },
      `HERALD_MAX_SOCKETS (${config.maxSockets}) is not below this process's open-file limit (${String(openFiles)}): capping connections at ${maxSockets}, so they are refused and logged before descriptors run out; raise the limit (ulimit -n) or lower HERALD_MAX_SOCKETS`)
  }
  http.maxConnections = maxSockets
  let dropped = 0
  let loggedAt = 0
  http.on('drop', (data?: { remoteAddress?: string }) => {
    dropped++
    const now = Date.now()
    if (now - loggedAt < DROP_LOG_INTERVAL_MS) return
    loggedAt = now
    server.log.warn({ maxSockets, dropped, remoteAddress: data?.remoteAddress },
      `HERALD_MAX_SOCKETS (${maxSockets}) reached: new connections are closed at once`)
    dropped = 0
  })
  // Node's own socket timeout handler destroys the socket (HTTP/2's destroys the session). Not a 'data' listener
  // to stop it: that would take the socket off Node's native HTTP parsing. The headers must come within
  // headersTimeout anyway.
  http.on(config.tls === undefined ? 'connection' : 'secureConnection', (socket: Socket & { alpnProtocol?: string | false }) => {
    // An HTTP/2 connection's socket belongs to its session: limitHttp2 times the session instead.
    if (socket.alpnProtocol !== 'h2') socket.setTimeout(config.headersTimeoutMs)
  })
  http.on('request', (request: IncomingMessage) => {
    // An HTTP/2 request's socket is the session's, shared with its other streams: limitHttp2 handles those.
    if (request.httpVersionMajor !== 2 && request.socket.timeout !== 0) request.socket.setTimeout(0)
  })
}

/**
 * The HTTP/2 counterparts of the HTTP/1.1 limits. A session that opens no stream within headersTimeout is
 * destroyed; after its first stream, after IDLE_CONNECTION_MS without a frame either way, which streams'
 * heartbeats keep from happening (a frame, PING included, restarts the wait). Destroyed, not closed: a graceful
 * close half-closes the socket and waits for the peer to close its side, which a client that sends nothing never
 * does. A request with a body has HERALD_REQUEST_TIMEOUT_MS to send all of it, or its stream is reset: HTTP/2 has
 * no headersTimeout, a request's headers arrive in one HEADERS frame. The HTTP/1.1 connections of the same server
 * keep Node's own checks, set here as createServer sets them without TLS.
 */
function limitHttp2 (server: FastifyInstance, config: Config): void {
  const http = server.server as unknown as Http2SecureServer & { headersTimeout: number, requestTimeout: number, connectionsCheckingInterval: number, keepAliveTimeout: number }
  Object.assign(http, http1Timeouts(config), { keepAliveTimeout: IDLE_CONNECTION_MS })
  const closedSessions = http2CloseLog(server)
  http.on('session', (session: Http2Session) => {
    session.setTimeout(config.headersTimeoutMs, () => destroySession(session))
    session.once('stream', () => session.setTimeout(IDLE_CONNECTION_MS))
    // Node closes a session past its limits (invalid frames, refused streams, a flood nghttp2 detects, a protocol
    // error) with an ERR_HTTP2_* error; a socket's error (a client gone: ECONNRESET) is no misbehaviour.
    session.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code?.startsWith('ERR_HTTP2_') !== true) return
      closedSessions(session, 'session-error', `${error.code}: ${error.message}`)
      destroySession(session, 0)
    })
  })
  const resets = new WeakMap<Http2Session, { since: number, count: number }>()
  http.on('stream', (stream: ServerHttp2Stream) => {
    const openedAt = Date.now()
    // A closed stream no longer knows its session.
    const session = stream.session
    stream.once('close', () => {
      if (stream.rstCode === constants.NGHTTP2_NO_ERROR || session === undefined || session.destroyed) return
      const now = Date.now()
      if (now - openedAt > RAPID_RESET_WINDOW_MS) return
      let window = resets.get(session)
      if (window === undefined || now - window.since > RAPID_RESET_WINDOW_MS) {
        window = { since: now, count: 0 }
        resets.set(session, window)
      }
      if (++window.count <= RAPID_RESET_LIMIT) return
      closedSessions(session, 'rapid-reset', `${window.count} streams reset within ${RAPID_RESET_WINDOW_MS} ms of opening`)
      destroySession(session, 0)
    })
    if (stream.endAfterHeaders) return
    const timer = setTimeout(() => stream.close(constants.NGHTTP2_CANCEL), config.requestTimeoutMs)
    const done = (): void => clearTimeout(timer)
    stream.once('end', done)
    stream.once('close', done)
  })
}

/**
 * Node 20 does not close HTTP/2 sessions on server.close(), and a graceful close waits for the peer. At
 * shutdown, after the hub ended the streams (its preClose hook is registered before this one), each session
 * gets a GOAWAY (no new streams) and is destroyed once its last stream closed: the hub cuts streams that do not
 * flush in time, so this takes a second at most.
 */
function closeHttp2Sessions (server: FastifyInstance): void {
  const openStreams = new Map<Http2Session, number>()
  let closing = false
  const http = server.server as unknown as Http2SecureServer
  http.on('session', (session: Http2Session) => {
    openStreams.set(session, 0)
    session.once('close', () => openStreams.delete(session))
  })
  http.on('stream', (stream: ServerHttp2Stream) => {
    const session = stream.session
    if (session === undefined) return
    openStreams.set(session, (openStreams.get(session) ?? 0) + 1)
    stream.once('close', () => {
      const left = (openStreams.get(session) ?? 1) - 1
      openStreams.set(session, left)
      if (closing && left === 0) destroySession(session)
    })
  })
  server.addHook('preClose', async () => {
    closing = true
    for (const [session, streams] of openStreams) {
      if (streams === 0) destroySession(session)
      else session.goaway()
    }
  })
}

/**
 * Destroys a session: GOAWAY, then Node ends the socket once its unsent bytes are out, which a client that
 * stopped reading never lets happen. Past a short grace the TCP connection under it is reset: Node keeps it as
 * the TLS socket's `_parent`, read through session.socket (which forwards to the TLS socket until the session is
 * gone, so before destroying it).
 */
function destroySession (session: Http2Session, graceMs = SESSION_CLOSE_GRACE_MS): void {
  if (session.destroyed) return
  const tcp = (session.socket as unknown as { _parent?: Socket })._parent
  session.destroy()
  if (tcp === undefined) return
  if (graceMs === 0) resetTcp(tcp)
  else setTimeout(() => resetTcp(tcp), graceMs).unref()
}

export type Http2CloseReason = 'rapid-reset' | 'session-error'

/**
 * Counts HTTP/2 sessions Herald closed for misbehaving (herald_http2_sessions_closed_total{reason}) and logs them
 * at warn, at most once per HTTP2_CLOSE_LOG_INTERVAL_MS with a count since the last line: an attacker reconnects
 * at once, and a line per session would flood the log.
 */
function http2CloseLog (server: FastifyInstance): (session: Http2Session, reason: Http2CloseReason, detail: string) => void {
  let loggedAt = 0
  let unlogged = 0
  return (session, reason, detail) => {
    server.metrics.http2SessionClosed(reason)
    unlogged++
    const now = Date.now()
    if (now - loggedAt < HTTP2_CLOSE_LOG_INTERVAL_MS) return
    loggedAt = now
    const remoteAddress = (session.socket as Socket | undefined)?.remoteAddress
    server.log.warn({ reason, detail, remoteAddress, sessions: unlogged },
      `closed ${unlogged} HTTP/2 connection(s) at once for ${reason} (last: ${remoteAddress ?? 'unknown address'}, ${detail}); logged at most every ${HTTP2_CLOSE_LOG_INTERVAL_MS / 1000} s, counted in herald_http2_sessions_closed_total`)
    unlogged = 0
  }
}

/** Resets a TCP connection (RST), so the kernel drops what waits in it; a socket without its handle is destroyed. */
function resetTcp (socket: Socket): void {
  if (socket.destroyed) return
  if ((socket as Socket & { _handle?: unknown })._handle == null) socket.destroy()
  else socket.resetAndDestroy()
}

export interface LoggerSettings {
  /** Human-readable lines (pino-pretty) instead of JSON; ignored when `destination` is given. */
  pretty?: boolean
  /** Where the JSON lines go; stdout by default. */
  destination?: DestinationStream
}

/** Herald's pino logger; Fastify adds its own `res` and `err` serializers to it. */
export function createLogger (config: Config, { pretty = Boolean(process.stdout.isTTY), destination }: LoggerSettings = {}): Logger {
  const options: LoggerOptions = {
    level: config.logLevel,
    serializers: {
      // Subscriber tokens may ride in the query string (EventSource cannot set headers): keep them out of logs.
      req: (request: { method: string, url: string, ip?: string }) => ({ method: request.method, url: redactTokens(request.url), remoteAddress: request.ip })
    }
  }
  if (destination !== undefined) return pino(options, destination)
  // Pretty output only for a person at a terminal, and only where the dev dependency is installed.
  if (pretty && canResolve('pino-pretty')) options.transport = { target: 'pino-pretty' }
  return pino(options)
}

export function redactTokens (url: string): string {
  return url.replace(/([?&]access_token=)[^&]*/g, '$1[redacted]')
}

/**
 * Header schemas hold only strings, so the type provider's Value.Convert of the whole headers object on every
 * request (~3% of a publish) changes nothing: check them as they are.
 */
function checkHeaders (schema: object): FastifyValidationResult {
  const check = Compile(schema as Parameters<typeof Compile>[0])
  return (value: unknown) => check.Check(value) ? { value } : { error: check.Errors(value) as unknown as FastifySchemaValidationError[] }
}

function canResolve (name: string): boolean {
  try {
    createRequire(import.meta.url).resolve(name)
    return true
  } catch {
    return false
  }
}

async function main (): Promise<void> {
  let config: Config
  try {
    config = loadConfig()
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    process.stderr.write(`herald: ${error.message}\n`)
    process.exit(2)
  }
  const refusal = insecureBindRefusal(config)
  if (refusal !== undefined) {
    process.stderr.write(`herald: ${refusal}\n`)
    process.exit(2)
  }
  const logger = createLogger(config)
  for (const { variable, suggestion, message } of unknownSettings(process.env, Object.keys(EnvSchema.properties))) {
    logger.warn({ variable, suggestion }, message)
  }
  let server: FastifyInstance
  try {
    server = await createServer(config, logger)
  } catch (error) {
    exitAtStart(logger, error)
  }
  // SIGTERM (an orchestrator, docker stop) drains first; SIGINT (Ctrl-C at a terminal) and errors close at once.
  // Closing is bounded (resetAtClose), so the delay is only a last resort.
  closeWithGrace({ delay: config.drainMs + 10_000 }, async ({ signal, err }) => {
    if (err !== undefined) server.log.error({ err }, 'closing after an error')
    else server.log.info({ signal }, 'closing')
    if (signal === 'SIGTERM') await server.drain()
    await server.close()
  })
  try {
    await server.listen({ host: config.host, port: config.port })
  } catch (error) {
    exitAtStart(logger, listenRefusal(error, { port: 'PORT', host: 'HOST' }, config.host, config.port) ?? error)
  }
}

/**
 * A start-up that cannot go on as configured ends with one line naming the setting and the address, and exit
 * code 1; anything else is a bug, thrown with its stack.
 */
function exitAtStart (logger: Logger, error: unknown): never {
  if (!(error instanceof StartupError)) throw error
  logger.fatal({ setting: error.setting, address: error.address }, error.message)
  logger.flush()
  process.exit(1)
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main()
}
