import type { FastifyInstance } from 'fastify'
import type { Socket } from 'node:net'
import type { TestContext } from 'node:test'
import { Agent, fetch as fetchWithAgent } from 'undici'
import { loadConfig, type Config } from '../src/config.js'
import { createLogger, createServer } from '../src/server.js'
import { testCertificate } from './helpers/tls.js'

export interface Herald {
  app: FastifyInstance
  config: Config
  /** http://127.0.0.1:<port>, or https:// when it serves TLS (HTTP/2 and HTTP/1.1) */
  url: string
  /** What Herald logged at the environment's LOG_LEVEL (silent unless set), as parsed JSON lines. */
  log: Array<Record<string, any>>
}

/**
 * Starts Herald on a free loopback port (or on `PORT` when the environment names one, e.g. to restart on the same
 * address) with the given environment (memory broker unless REDIS_URL is set), and closes it when the test ends.
 */
export async function build (t: Pick<TestContext, 'after'> | undefined, env: Record<string, string> = {}): Promise<Herald> {
  const config = loadConfig({ LOG_LEVEL: 'silent', PORT: '0', HERALD_METRICS_PORT: '0', ...env })
  const log: Array<Record<string, any>> = []
  const app = await createServer(config, createLogger(config, { destination: { write: (line: string) => { log.push(JSON.parse(line)) } } }))
  trackConnections(app)
  t?.after(async () => await closeWithin(app))
  await app.listen({ host: '127.0.0.1', port: config.port })
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  return { app, config, url: `${config.tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}`, log }
}

/** How a test reaches Herald: plain HTTP/1.1, or HTTPS with HTTP/2 (the server then serves HTTP/1.1 by ALPN too). */
export type Protocol = 'http/1.1' | 'h2'

export const PROTOCOLS: Protocol[] = ['http/1.1', 'h2']

/** The environment that makes Herald serve HTTPS with the test certificate (see helpers/tls.ts). */
export function tlsEnv (): Record<string, string> {
  const { certPath, keyPath } = testCertificate()
  return { HERALD_TLS_CERT: certPath, HERALD_TLS_KEY: keyPath }
}

/**
 * How long a test lets app.close() take: the hub's flush window and an HTTP/2 session's grace are a second each,
 * so this is far more than a healthy close needs, and far less than the file's 120 s timeout.
 */
export const CLOSE_DEADLINE_MS = 10_000

const connectionsOf = new WeakMap<FastifyInstance, Set<Socket>>()

/** Keeps every TCP connection the app accepts (TLS ones too: their TCP socket), so closeWithin can cut them. */
function trackConnections (app: FastifyInstance): void {
  const connections = new Set<Socket>()
  connectionsOf.set(app, connections)
  app.server.on('connection', (socket: Socket) => {
    connections.add(socket)
    socket.once('close', () => connections.delete(socket))
  })
}

/**
 * app.close(), failing with a message when it takes longer than `deadlineMs`. A close that hangs waits for a
 * connection Herald did not end: a stream's socket half-closed (end) instead of reset, say, and a client that
 * reads nothing. Past the deadline every connection the app still has is destroyed, so the close, and the test
 * file, can finish, and the test fails at once with what was left open instead of as the file's timeout.
 */
export async function closeWithin (app: FastifyInstance, deadlineMs = CLOSE_DEADLINE_MS): Promise<void> {
  const started = performance.now()
  const closing = app.close()
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<'late'>((resolve) => { timer = setTimeout(() => resolve('late'), deadlineMs) })
  const outcome = await Promise.race([closing.then(() => 'closed' as const), late])
  clearTimeout(timer)
  if (outcome === 'closed') return
  const open = [...(connectionsOf.get(app) ?? [])]
  const described = open.map((socket) => `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'} (${socket.writableLength} bytes unsent, ${socket.writableEnded ? 'ended' : 'not ended'})`)
  for (const socket of open) socket.destroy()
  const finished = await Promise.race([closing.then(() => true), new Promise<false>((resolve) => setTimeout(() => resolve(false), 5_000).unref())])
  throw new Error(`app.close() did not finish within ${deadlineMs} ms: a stream's socket was not reset (ended instead?). ` +
    `${open.length} connection(s) still open: ${described.join(', ') || 'none (something else holds the close)'}; ` +
    `they were destroyed, and the close then ${finished ? `finished after ${(performance.now() - started).toFixed(0)} ms` : 'still did not finish'}`)
}

/** Herald for a protocol: over h2 it serves HTTPS, and its `url` is https://, which the clients here speak h2 to. */
export async function buildFor (t: Pick<TestContext, 'after'> | undefined, protocol: Protocol, env: Record<string, string> = {}): Promise<Herald> {
  return await build(t, protocol === 'h2' ? { ...tlsEnv(), ...env } : env)
}

let httpsAgent: Agent | undefined

/**
 * fetch for http:// and https:// URLs of test servers: HTTPS trusts the test CA and speaks HTTP/2 (undici's
 * fetch, as Node 20's own cannot be given a CA).
 */
export async function request (url: string, init: RequestInit = {}): Promise<Response> {
  if (!url.startsWith('https:')) return await fetch(url, init)
  httpsAgent ??= new Agent({ connect: { ca: testCertificate().ca }, allowH2: true })
  return await fetchWithAgent(url, { ...init, dispatcher: httpsAgent } as Parameters<typeof fetchWithAgent>[1]) as unknown as Response
}

/** Publishes through the HTTP API; returns status and parsed body. */
export async function publish (url: string, body: unknown, headers: Record<string, string> = {}, search = ''): Promise<{ status: number, body: any }> {
  const response = await request(`${url}/v1/events${search}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000)
  })
  const text = await response.text()
  return { status: response.status, body: text === '' ? undefined : JSON.parse(text) }
}

/** Publishes `count` events to a topic one after another and returns their ids; any answer but 202 throws. */
export async function publishMany (url: string, topic: string, count: number): Promise<string[]> {
  const ids: string[] = []
  for (let index = 0; index < count; index++) {
    const reply = await publish(url, { topic, data: index })
    if (reply.status !== 202) throw new Error(`publish ${index} to ${topic} answered ${reply.status}: ${JSON.stringify(reply.body)}`)
    ids.push(reply.body.id as string)
  }
  return ids
}

/** Polls until `check` is true, or fails after `timeoutMs`. */
export async function until (check: () => boolean | Promise<boolean>, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
