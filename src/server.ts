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
import { unknownSettings } from './unknown-settings.js'

/** How long an idle keep-alive connection (HTTP/1.1) or HTTP/2 connection stays open. */
const IDLE_CONNECTION_MS = 72_000
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
      https: { ...config.tls, allowHTTP1: true, handshakeTimeout: config.headersTimeoutMs, noDelay: true }
    }) as unknown as FastifyInstance
  limitSockets(server, config)
  if (config.tls !== undefined) limitHttp2(server, config)
  server.setValidatorCompiler((route) => route.httpPart === 'headers' ? checkHeaders(route.schema) : TypeBoxValidatorCompiler(route))
  // The app's decorators (config, hub) and handlers belong to the root instance, as in fastify/demo.
  await server.register(fp(app), { config })
  if (config.tls !== undefined) closeHttp2Sessions(server)
  return server
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
  // Info, not warn: nothing is wrong once the cap is lowered; reaching it is the warning.
  if (maxSockets < config.maxSockets) {
    server.log.info({ maxSockets: config.maxSockets, openFileLimit: openFiles, cap: maxSockets },
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
  http.on('session', (session: Http2Session) => {
    session.setTimeout(config.headersTimeoutMs, () => destroySession(session))
    session.once('stream', () => session.setTimeout(IDLE_CONNECTION_MS))
  })
  http.on('stream', (stream: ServerHttp2Stream) => {
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
function destroySession (session: Http2Session): void {
  if (session.destroyed) return
  const tcp = (session.socket as unknown as { _parent?: Socket })._parent
  session.destroy()
  if (tcp === undefined) return
  setTimeout(() => { if (!tcp.destroyed) tcp.resetAndDestroy() }, SESSION_CLOSE_GRACE_MS).unref()
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
  const server = await createServer(config)
  for (const { variable, suggestion, message } of unknownSettings(process.env, Object.keys(EnvSchema.properties))) {
    server.log.warn({ variable, suggestion }, message)
  }
  // SIGTERM (an orchestrator, docker stop) drains first; SIGINT (Ctrl-C at a terminal) and errors close at once.
  closeWithGrace({ delay: config.drainMs + 10_000 }, async ({ signal, err }) => {
    if (err !== undefined) server.log.error({ err }, 'closing after an error')
    else server.log.info({ signal }, 'closing')
    if (signal === 'SIGTERM') await server.drain()
    await server.close()
  })
  await server.listen({ host: config.host, port: config.port })
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main()
}
