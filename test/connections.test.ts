// Limits on connections themselves: open sockets per instance, and how long a client may take to send a request.
import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { test, type TestContext } from 'node:test'
import { DESCRIPTOR_RESERVE, openFileLimit, processOpenFileLimit } from '../src/open-file-limit.js'
import { build, until } from './helper.js'
import { openStream } from './helpers/sse-client.js'

/** Herald on a free loopback port, with its log lines kept for the test. */
async function buildLogged (t: TestContext, env: Record<string, string>) {
  const { app, url, log: lines } = await build(t, { LOG_LEVEL: 'info', ...env })
  return { app, lines, port: Number(new URL(url).port), url }
}

/** A raw client connection that records when it closes and what it received. */
function rawClient (t: TestContext, port: number): { socket: Socket, closed: () => number | undefined, received: () => string } {
  const socket = connect(port, '127.0.0.1')
  const opened = performance.now()
  let closedAfter: number | undefined
  let received = ''
  socket.on('data', (chunk: Buffer) => { received += chunk.toString() })
  socket.on('error', () => {})
  socket.on('close', () => { closedAfter = performance.now() - opened })
  t.after(() => socket.destroy())
  return { socket, closed: () => closedAfter, received: () => received }
}

test('open sockets per instance: past HERALD_MAX_SOCKETS new connections are closed at once, with one warning', async (t) => {
  const { lines, port, url } = await buildLogged(t, { HERALD_MAX_SOCKETS: '3' })
  const streams = await Promise.all([1, 2, 3].map(async () => await openStream(`${url}/v1/stream?topic=a`)))
  t.after(() => { for (const stream of streams) stream.close() })
  const extra = [rawClient(t, port), rawClient(t, port), rawClient(t, port)]
  await until(() => extra.every((client) => client.closed() !== undefined), 2_000, 'connections past the cap to be closed')
  const warnings = lines.filter((line) => typeof line.msg === 'string' && line.msg.includes('HERALD_MAX_SOCKETS'))
  assert.equal(warnings.length, 1, 'one line for a burst, not one per connection')
  assert.equal(warnings[0]?.level, 40)
  assert.equal(warnings[0]?.maxSockets, 3)
  assert.ok(streams.every((stream) => !stream.ended()), 'open streams are untouched')
  streams[0]?.close()
  await until(async () => await openStream(`${url}/v1/stream?topic=a`).then((stream) => { streams.push(stream); return stream.status === 200 }, () => false), 2_000, 'a socket slot to free')
})

test('HERALD_MAX_SOCKETS not below the open-file limit is capped below it, and said at start (info); one below it is kept', async (t) => {
  const limit = processOpenFileLimit()
  assert.ok(limit !== undefined && limit > 2 * DESCRIPTOR_RESERVE, `open-file limit ${String(limit)}`)
  // As on a host whose `ulimit -n` is the default HERALD_MAX_SOCKETS (this machine's is 20,000): descriptors would run
  // out first, and Node then closes every new connection without a word.
  const at = await buildLogged(t, { HERALD_MAX_SOCKETS: String(limit) })
  assert.equal(at.app.server.maxConnections, limit - DESCRIPTOR_RESERVE)
  const warnings = at.lines.filter((line) => typeof line.msg === 'string' && line.msg.includes('open-file limit'))
  assert.equal(warnings.length, 1)
  assert.equal(warnings[0]?.level, 30, 'info: the cap is safe once lowered; reaching it is the warning')
  assert.deepEqual([warnings[0]?.maxSockets, warnings[0]?.openFileLimit, warnings[0]?.cap], [limit, limit, limit - DESCRIPTOR_RESERVE])

  const below = Math.floor(limit / 2)
  const under = await buildLogged(t, { HERALD_MAX_SOCKETS: String(below) })
  assert.equal(under.app.server.maxConnections, below)
  assert.equal(under.lines.filter((line) => typeof line.msg === 'string' && line.msg.includes('open-file limit')).length, 0)
})

test('on a default host (HERALD_MAX_SOCKETS unset, not below the open-file limit) the lowered cap is said at debug only, not on every start', async (t) => {
  const limit = processOpenFileLimit()
  const defaultCap = 20_000
  if (limit === undefined || limit > defaultCap) {
    t.skip(`this host's open-file limit (${String(limit)}) is above the default cap: nothing is lowered`)
    return
  }
  const info = await buildLogged(t, {})
  assert.equal(info.app.server.maxConnections, limit - DESCRIPTOR_RESERVE)
  assert.deepEqual(info.lines.filter((line) => typeof line.msg === 'string' && line.msg.includes('open-file limit')), [], 'nothing at info')
  const debug = await build(t, { LOG_LEVEL: 'debug' })
  const said = debug.log.filter((line) => typeof line.msg === 'string' && line.msg.includes('open-file limit'))
  assert.equal(said.length, 1)
  assert.equal(said[0]?.level, 20, 'debug')
})

test('openFileLimit reads the soft "Max open files" of /proc/<pid>/limits', () => {
  const limits = (soft: string, hard: string) => `Limit                     Soft Limit           Hard Limit           Units     \nMax processes             95957                95957                processes \nMax open files            ${soft.padEnd(21)}${hard.padEnd(21)}files     \nMax locked memory         8388608              8388608              bytes     \n`
  assert.equal(openFileLimit(limits('1024', '524288')), 1024)
  assert.equal(openFileLimit(limits('20000', '20000')), 20_000)
  assert.equal(openFileLimit(limits('unlimited', 'unlimited')), undefined)
  assert.equal(openFileLimit('no such line'), undefined)
})

test('request timeouts hold at their configured values: no bytes, partial headers, a slow body; a stream outlives them', { timeout: 30_000 }, async (t) => {
  const { port, url } = await buildLogged(t, { HERALD_HEADERS_TIMEOUT_MS: '300', HERALD_REQUEST_TIMEOUT_MS: '600' })
  const stream = await openStream(`${url}/v1/stream?topic=a`)
  t.after(() => stream.close())
  const silent = rawClient(t, port)
  const partial = rawClient(t, port)
  partial.socket.write('GET /health HTTP/1.1\r\nHost: localhost\r\n')
  const slowBody = rawClient(t, port)
  slowBody.socket.write('POST /v1/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"topic":')
  const drip = setInterval(() => slowBody.socket.write(' '), 100)
  t.after(() => clearInterval(drip))
  await until(() => silent.closed() !== undefined && partial.closed() !== undefined && slowBody.closed() !== undefined, 5_000, 'slow clients to be cut')
  clearInterval(drip)
  const [silentMs, partialMs, slowBodyMs] = [silent.closed() ?? 0, partial.closed() ?? 0, slowBody.closed() ?? 0]
  t.diagnostic(`closed after: no bytes ${silentMs.toFixed(0)} ms, partial headers ${partialMs.toFixed(0)} ms, slow body ${slowBodyMs.toFixed(0)} ms (headers 300 ms, request 600 ms)`)
  // Generous bounds: Node checks every second at most; the defaults would leave them open for 30-60 s or forever.
  for (const ms of [silentMs, partialMs]) assert.ok(ms >= 250 && ms < 2_500, `${ms} ms`)
  assert.ok(slowBodyMs >= 550 && slowBodyMs < 2_500, `${slowBodyMs} ms`)
  assert.equal(stream.ended(), false, 'a stream is not a request in progress: it stays open')
})

test('a Last-Event-ID header longer than 64 characters is a 400 that does not echo it', async (t) => {
  const { lines, url } = await buildLogged(t, {})
  const long = '7'.repeat(10_000)
  const refused = await openStream(`${url}/v1/stream?topic=a`, { 'last-event-id': long })
  assert.equal(refused.status, 400)
  const body = JSON.parse(refused.text()) as { code: string, message: string }
  assert.equal(body.code, 'FST_ERR_VALIDATION')
  assert.match(body.message, /last-event-id/)
  assert.ok(body.message.length < 200, body.message)
  assert.equal(lines.some((line) => JSON.stringify(line).includes('7'.repeat(65))), false, 'never logged at length')
  const ok = await openStream(`${url}/v1/stream?topic=a`, { 'last-event-id': '7'.repeat(64) })
  ok.close()
  assert.equal(ok.status, 200)
})
