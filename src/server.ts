import { TypeBoxValidatorCompiler } from '@fastify/type-provider-typebox'
import { Compile } from 'typebox/compile'
import closeWithGrace from 'close-with-grace'
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifySchemaValidationError } from 'fastify'
import type { FastifyValidationResult } from 'fastify/types/schema.js'
import fp from 'fastify-plugin'
import { createRequire } from 'node:module'
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import { pathToFileURL } from 'node:url'
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino'
import app from './app.js'
import { ConfigError, insecureBindRefusal, loadConfig, type Config } from './config.js'
import { processOpenFileLimit, socketCap } from './open-file-limit.js'

/**
 * Builds the Fastify instance and registers the app; the caller listens. Tests use this too, and pass their own
 * logger (from `createLogger` with a destination) to read what Herald logs.
 */
export async function createServer (config: Config, logger: FastifyBaseLogger = createLogger(config)): Promise<FastifyInstance> {
  const server = Fastify({
    loggerInstance: logger,
    bodyLimit: config.maxBodyBytes,
    // SSE responses are long-lived: no timeout may cut them, and close() ends them in preClose.
    connectionTimeout: 0,
    // These bound receiving a request only, never the response. Node checks them every
    // connectionsCheckingInterval (30 s by default): check often enough that they hold at their values.
    requestTimeout: config.requestTimeoutMs,
    http: { headersTimeout: config.headersTimeoutMs, requestTimeout: config.requestTimeoutMs, connectionsCheckingInterval: Math.min(1_000, config.headersTimeoutMs) },
    keepAliveTimeout: 72_000,
    // Requests that come while the server closes are answered by the routes: a stream gets the retryable
    // refusal (the hub is draining), which EventSource follows, where Fastify's plain 503 would end it for good.
    return503OnClosing: false,
    trustProxy: config.trustProxy
  })
  limitSockets(server, config)
  server.setValidatorCompiler((route) => route.httpPart === 'headers' ? checkHeaders(route.schema) : TypeBoxValidatorCompiler(route))
  // The app's decorators (config, hub) and handlers belong to the root instance, as in fastify/demo.
  await server.register(fp(app), { config })
  return server
}

/** How often, at most, the warning about dropped connections is repeated while connections keep coming. */
const DROP_LOG_INTERVAL_MS = 10_000

/**
 * Caps open sockets below the file descriptor limit (Node closes new ones past `maxConnections` and emits
 * 'drop'), says so in the log, and closes a connection that sends nothing: Node's headersTimeout starts only with
 * a request's first byte, so without this an idle connection would hold its descriptor forever.
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
  // Node's own socket timeout handler destroys the socket. Not a 'data' listener to stop it: that would take the
  // socket off Node's native HTTP parsing. The headers must come within headersTimeout anyway.
  http.on('connection', (socket: Socket) => socket.setTimeout(config.headersTimeoutMs))
  http.on('request', (request: IncomingMessage) => {
    if (request.socket.timeout !== 0) request.socket.setTimeout(0)
  })
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
