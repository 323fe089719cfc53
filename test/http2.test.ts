// Herald over HTTPS: HTTP/2 streams, many to a connection, keep every stream guarantee, and cutting one leaves
// the others alone; HTTP/1.1 clients of the same server (ALPN) keep theirs; the connection limits hold.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { connect, constants, type ClientHttp2Session, type ServerHttp2Stream } from 'node:http2'
import { connect as tcpConnect, type Socket } from 'node:net'
import { test, type TestContext } from 'node:test'
import { connect as tlsConnect, type TLSSocket } from 'node:tls'
import { build, buildFor, closeWithin, publish, request, tlsEnv, until } from './helper.js'
import { openStream, payloads, type StreamClient } from './helpers/sse-client.js'
import { startProxy } from './helpers/tcp-proxy.js'
import { testCertificate } from './helpers/tls.js'

/** An HTTP/2 connection to Herald that the test closes at its end. */
function session (t: TestContext, url: string): ClientHttp2Session {
  const client = connect(url, { ca: testCertificate().ca })
  client.on('error', () => {})
  t.after(() => client.close())
  return client
}

/** The kernel's TCP state of a loopback connection's server side (Linux /proc/net/tcp); undefined when gone. */
function kernelSocketState (serverPort: number, clientPort: number): string | undefined {
  const hex = (port: number) => port.toString(16).toUpperCase().padStart(4, '0')
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const [, local, remote, state] = line.trim().split(/\s+/)
    if (local?.endsWith(`:${hex(serverPort)}`) === true && remote?.endsWith(`:${hex(clientPort)}`) === true) return state
  }
  return undefined
}

test('h2: a stream that stops reading is reset (RST_STREAM CANCEL) at the byte cap; the other streams of its connection get everything', { timeout: 60_000 }, async (t) => {
  const { app, url, log } = await buildFor(t, 'h2', { LOG_LEVEL: 'info', HERALD_MAX_QUEUE_BYTES: '65536' })
  const connection = session(t, url)
  const normal = await Promise.all([1, 2, 3].map(async () => await openStream(`${url}/v1/stream?topic=firehose`, {}, { session: connection })))
  const slow = await openStream(`${url}/v1/stream?topic=firehose`, {}, { session: connection })
  for (const client of [...normal, slow]) t.after(client.close)
  await until(() => app.hub.listenerCount('firehose') === 4, 2_000, 'subscribed')
  slow.pause()

  const payload = 'x'.repeat(1024)
  let published = 0
  // HTTP/2 flow control holds the first 64 KiB (the stream's window) in flight; past that, bytes queue in Herald.
  while (slow.resetCode() === undefined && published < 2_000) {
    assert.equal((await publish(url, { topic: 'firehose', data: { n: published, payload } })).status, 202)
    published++
  }
  await until(() => slow.resetCode() !== undefined, 2_000, 'the slow stream to be reset')
  assert.equal(slow.resetCode(), constants.NGHTTP2_CANCEL)
  const droppedAfter = published
  for (let index = 0; index < 50; index++) await publish(url, { topic: 'firehose', data: { n: published++, payload } })
  await until(() => normal.every((client) => client.events.length === published), 10_000, 'every event on the other streams')
  for (const client of normal) assert.deepEqual(payloads(client.events).map((data) => (data as { n: number }).n), [...Array(published).keys()])
  assert.equal(connection.closed || connection.destroyed, false, 'the connection stays open')
  assert.equal(app.hub.listenerCount('firehose'), 3)

  const line = log.find((entry) => entry.msg === 'stream closed' && entry.reason === 'slow-client')
  assert.ok(line !== undefined, 'the drop is logged')
  assert.equal(line.level, 30)
  assert.ok(line.queuedBytes > 65_536 && line.queuedBytes <= 65_536 + 2_048, `held ${line.queuedBytes} bytes`)
  t.diagnostic(`the slow stream was reset after ${droppedAfter} events of ~1 KiB, holding ${line.queuedBytes} bytes in Herald`)
})

test('h2: a stream whose peer takes no byte is reset after the stall timeout, though events keep coming; its connection and other streams go on', { timeout: 60_000 }, async (t) => {
  // A byte cap far above what the test sends: only the stall timeout can end the stream.
  const { app, url, log } = await buildFor(t, 'h2', { LOG_LEVEL: 'info', HERALD_HEARTBEAT_MS: '100', HERALD_STALL_TIMEOUT_MS: '500', HERALD_MAX_QUEUE_BYTES: String(64 * 2 ** 20) })
  const serverStreams: ServerHttp2Stream[] = []
  app.server.on('stream', (stream: ServerHttp2Stream) => serverStreams.push(stream))
  const connection = session(t, url)
  const reading = await openStream(`${url}/v1/stream?topic=stall`, {}, { session: connection })
  const stalled = await openStream(`${url}/v1/stream?topic=stall`, {}, { session: connection })
  for (const client of [reading, stalled]) t.after(client.close)
  await until(() => app.hub.listenerCount('stall') === 2, 2_000, 'subscribed')
  const stalledOnServer = serverStreams[1] as ServerHttp2Stream
  stalled.pause()
  // Until the stream's flow-control window (64 KiB) is full, as the client sees it, and bytes wait in the server's
  // stream. The server's writableLength alone is no sign of a full window: it also counts a write on its way to
  // nghttp2 (a 2-byte heartbeat, for one) for the moment before it is sent, window or not.
  let published = 0
  while ((stalled.receiveWindow() !== 0 || stalledOnServer.writableLength === 0) && published < 1_000) {
    assert.equal((await publish(url, { topic: 'stall', data: 'x'.repeat(1_000) })).status, 202)
    published++
  }
  assert.equal(stalled.receiveWindow(), 0, 'the stalled stream\'s window is full')
  assert.ok(stalledOnServer.writableLength > 0, 'bytes wait for the stalled stream')
  const waitingAt = performance.now()
  // Small events keep coming, straight into the stream: more bytes waiting is not progress.
  while (stalled.resetCode() === undefined && performance.now() - waitingAt < 10_000) {
    assert.equal((await publish(url, { topic: 'stall', data: 'trickle' })).status, 202)
    published++
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  const resetAfter = performance.now() - waitingAt
  assert.equal(stalled.resetCode(), constants.NGHTTP2_CANCEL)
  const closes = log.filter((entry) => entry.msg === 'stream closed')
  assert.deepEqual(closes.map((entry) => entry.reason), ['stalled'])
  assert.ok(closes[0]?.stalledMs >= 500, `stalledMs ${closes[0]?.stalledMs}`)
  await publish(url, { topic: 'stall', data: 'after' })
  await until(() => reading.events.length === published + 1, 5_000, 'the other stream to get every event')
  assert.equal(reading.ended(), false)
  t.diagnostic(`the stalled stream was reset ${resetAfter.toFixed(0)} ms after bytes started waiting for it (timeout 500 ms, heartbeat 100 ms)`)
})

test('h2: heartbeats reach every stream of a connection', async (t) => {
  const { url } = await buildFor(t, 'h2', { HERALD_HEARTBEAT_MS: '50' })
  const connection = session(t, url)
  const clients = await Promise.all([1, 2].map(async () => await openStream(`${url}/v1/stream?topic=beat`, {}, { session: connection })))
  for (const client of clients) t.after(client.close)
  // The opening comment, then heartbeats.
  await until(() => clients.every((client) => client.comments() >= 4), 3_000, 'heartbeats')
  assert.ok(clients.every((client) => !client.ended()))
})

test('h2: shutdown ends every stream cleanly (END_STREAM, then GOAWAY) and close() returns promptly', { timeout: 30_000 }, async (t) => {
  const herald = await build(undefined, tlsEnv())
  const connection = session(t, herald.url)
  let goaway = false
  connection.on('goaway', () => { goaway = true })
  const clients = await Promise.all([1, 2, 3].map(async () => await openStream(`${herald.url}/v1/stream?topic=bye`, {}, { session: connection })))
  await publish(herald.url, { topic: 'bye', data: 'last' })
  await until(() => clients.every((client) => client.events.length === 1), 2_000, 'the event')
  const started = performance.now()
  await closeWithin(herald.app, 5_000)
  const closeMs = performance.now() - started
  await until(() => clients.every((client) => client.resetCode() !== undefined), 2_000, 'the streams to close')
  assert.deepEqual(clients.map((client) => client.resetCode()), [0, 0, 0], 'ended, not reset')
  assert.equal(goaway, true, 'the connection was told to go away')
  await until(() => connection.closed || connection.destroyed, 2_000, 'the connection to close')
  t.diagnostic(`app.close() took ${closeMs.toFixed(0)} ms with 3 open HTTP/2 streams`)
  assert.ok(closeMs < 2_000, `close took ${closeMs.toFixed(0)} ms`)
})

test('h2: shutdown does not wait for a client that stopped reading its whole connection', { timeout: 30_000 }, async (t) => {
  const herald = await build(undefined, { ...tlsEnv(), HERALD_MAX_QUEUE_BYTES: String(64 * 2 ** 20) })
  t.after(async () => await closeWithin(herald.app))
  const proxy = await startProxy(Number(new URL(herald.url).port))
  t.after(proxy.close)
  const ca = testCertificate().ca
  // Flow-control windows far larger than what the test sends: only the frozen connection holds the bytes back.
  const connection = connect(herald.url, {
    settings: { initialWindowSize: 2 ** 31 - 1 },
    createConnection: () => tlsConnect({ host: '127.0.0.1', port: proxy.port, ca, ALPNProtocols: ['h2'] })
  })
  connection.on('error', () => {})
  connection.on('connect', () => connection.setLocalWindowSize(2 ** 31 - 1))
  t.after(() => connection.destroy())
  const serverStreams: ServerHttp2Stream[] = []
  herald.app.server.on('stream', (stream: ServerHttp2Stream) => serverStreams.push(stream))
  const client = await openStream(`${herald.url}/v1/stream?topic=frozen`, {}, { session: connection })
  await until(() => herald.app.hub.listenerCount('frozen') === 1, 2_000, 'subscribed')
  proxy.freeze()
  // Until the kernel's buffers between Herald and the client are full and bytes wait in Herald's stream.
  const waiting = (): number => serverStreams[0]?.writableLength ?? 0
  let published = 0
  while (waiting() === 0 && published < 2_000) {
    assert.equal((await publish(herald.url, { topic: 'frozen', data: 'x'.repeat(60_000) })).status, 202)
    published++
  }
  assert.ok(waiting() > 0, `bytes wait for the client (${published} events of 60 KB)`)
  const started = performance.now()
  await closeWithin(herald.app, 5_000)
  const closeMs = performance.now() - started
  t.diagnostic(`app.close() took ${closeMs.toFixed(0)} ms with a client that reads nothing (bytes waiting after ${published} events of 60 KB)`)
  // The hub's flush window (1 s), then the session's grace (1 s) before its TCP connection is reset.
  assert.ok(closeMs < 5_000, `close took ${closeMs.toFixed(0)} ms`)
  assert.equal(client.ended(), false, 'the frozen client saw nothing')
})

test('h2: a refused stream is the same short 200 event stream, without a Connection header (no warning from Node)', async (t) => {
  const warnings: string[] = []
  const onWarning = (warning: Error): void => { warnings.push(warning.message) }
  process.on('warning', onWarning)
  t.after(() => process.off('warning', onWarning))
  const { url } = await buildFor(t, 'h2', { HERALD_MAX_CONNECTIONS: '1' })
  const open = await openStream(`${url}/v1/stream?topic=a`)
  t.after(open.close)
  const refused = await openStream(`${url}/v1/stream?topic=a`)
  await until(() => refused.ended(), 2_000, 'the refusal to end')
  assert.equal(refused.status, 200)
  assert.equal(refused.headers.connection, undefined)
  assert.match(refused.text(), /^: herald\nretry: \d+\nevent: herald.unavailable\ndata: \{"reason":"instance-full","retryMs":\d+\}\n\n$/)
  assert.equal(refused.resetCode(), 0)
  assert.deepEqual(warnings, [])
})

/** A TLS client that offers one ALPN protocol, and the server's socket for it once Herald has it. */
async function tlsClient (t: TestContext, port: number, protocol: 'h2' | 'http/1.1'): Promise<TLSSocket> {
  const socket = tlsConnect({ host: '127.0.0.1', port, ca: testCertificate().ca, ALPNProtocols: [protocol] })
  socket.on('error', () => {})
  t.after(() => socket.destroy())
  await new Promise((resolve) => socket.once('secureConnect', resolve))
  assert.equal(socket.alpnProtocol, protocol)
  // Reading, so that it sees the server close the connection.
  socket.resume()
  return socket
}

test('HTTP/1.1 over TLS (ALPN): the stream works as over plain HTTP, and a stalled client is reset, freeing its kernel socket', { timeout: 60_000 }, async (t) => {
  const { app, url, log } = await buildFor(t, 'h2', { LOG_LEVEL: 'info', HERALD_HEARTBEAT_MS: '100', HERALD_STALL_TIMEOUT_MS: '500', HERALD_MAX_QUEUE_BYTES: String(256 * 2 ** 20) })
  const port = Number(new URL(url).port)
  const viaHttps = await openStream(`${url}/v1/stream?topic=tls`, {}, { http1: true })
  t.after(viaHttps.close)
  assert.equal(viaHttps.status, 200)
  assert.equal(viaHttps.headers.connection, 'close')
  await publish(url, { topic: 'tls', data: 'over https' })
  assert.deepEqual(payloads(await viaHttps.waitForEvents(1)), ['over https'])

  const serverSockets = new Map<number, Socket>()
  app.server.on('secureConnection', (socket: Socket) => { if (socket.remotePort !== undefined) serverSockets.set(socket.remotePort, socket) })
  const client = await tlsClient(t, port, 'http/1.1')
  client.write('GET /v1/stream?topic=stall HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n')
  client.pause()
  await until(() => app.hub.listenerCount('stall') === 1, 5_000, 'subscribed')
  const serverSocket = serverSockets.get(client.localPort as number)
  assert.ok(serverSocket !== undefined)
  const data = 'x'.repeat(60_000)
  let published = 0
  // A whole event waiting, not just some bytes: a heartbeat (`:`) in flight also shows as a few bytes waiting (over
  // TLS until it is encrypted), while the kernel still has room and the client is not stalled yet.
  while (serverSocket.writableLength < data.length && published < 2_000) {
    assert.equal((await publish(url, { topic: 'stall', data })).status, 202)
    published++
  }
  assert.ok(serverSocket.writableLength >= data.length, 'an event waits in the server socket')
  await until(() => app.hub.listenerCount('stall') === 0, 10_000, 'the stalled stream to be dropped')
  await until(() => kernelSocketState(port, client.localPort as number) === undefined, 2_000, 'the kernel to free the socket (reset, not closed)')
  assert.equal(log.filter((entry) => entry.msg === 'stream closed' && entry.reason === 'stalled').length, 1)
  assert.equal(viaHttps.ended(), false, 'the other client is untouched')
})

test('over TLS, HERALD_MAX_SOCKETS counts TCP connections: an HTTP/2 connection with many streams is one', async (t) => {
  const { url, log } = await buildFor(t, 'h2', { LOG_LEVEL: 'info', HERALD_MAX_SOCKETS: '2' })
  const port = Number(new URL(url).port)
  const first = session(t, url)
  const streams: StreamClient[] = []
  for (let index = 0; index < 5; index++) streams.push(await openStream(`${url}/v1/stream?topic=a`, {}, { session: first }))
  streams.push(await openStream(`${url}/v1/stream?topic=a`, {}, { session: session(t, url) }))
  for (const stream of streams) t.after(stream.close)
  assert.ok(streams.every((stream) => stream.status === 200))
  // A third connection is closed before its handshake.
  const extra = tcpConnect(port, '127.0.0.1')
  extra.on('error', () => {})
  t.after(() => extra.destroy())
  await new Promise((resolve) => extra.once('close', resolve))
  await until(() => log.some((entry) => typeof entry.msg === 'string' && entry.msg.includes('HERALD_MAX_SOCKETS')), 2_000, 'the warning')
  assert.ok(streams.every((stream) => !stream.ended()), 'open streams are untouched')
})

test('over TLS, connections that send nothing are closed: no handshake, no request (HTTP/1.1), no stream (HTTP/2); a slow HTTP/2 body is reset', { timeout: 30_000 }, async (t) => {
  const { url } = await buildFor(t, 'h2', { HERALD_HEADERS_TIMEOUT_MS: '300', HERALD_REQUEST_TIMEOUT_MS: '600' })
  const port = Number(new URL(url).port)
  const stream = await openStream(`${url}/v1/stream?topic=a`)
  t.after(stream.close)
  const closedAfter = async (socket: Socket, opened: number): Promise<number> => await new Promise((resolve) => socket.once('close', () => resolve(performance.now() - opened)))
  let opened = performance.now()
  const raw = tcpConnect(port, '127.0.0.1')
  raw.on('error', () => {})
  t.after(() => raw.destroy())
  const noHandshake = closedAfter(raw, opened)
  const idle: Array<Promise<number>> = []
  for (const protocol of ['http/1.1', 'h2'] as const) {
    opened = performance.now()
    idle.push(closedAfter(await tlsClient(t, port, protocol), opened))
  }
  // A publish over HTTP/2 whose body never completes.
  const publisher = session(t, url)
  const post = publisher.request({ ':method': 'POST', ':path': '/v1/events', 'content-type': 'application/json', 'content-length': '100' })
  post.on('error', () => {})
  post.write('{"topic":')
  const postOpened = performance.now()
  const drip = setInterval(() => post.write(' '), 100)
  t.after(() => clearInterval(drip))
  const slowBody = await new Promise<number>((resolve) => post.once('close', () => resolve(performance.now() - postOpened)))
  clearInterval(drip)
  const [handshakeMs, http1Ms, http2Ms] = await Promise.all([noHandshake, ...idle])
  t.diagnostic(`closed after: no handshake ${handshakeMs?.toFixed(0)} ms, no HTTP/1.1 request ${http1Ms?.toFixed(0)} ms, no HTTP/2 stream ${http2Ms?.toFixed(0)} ms, slow HTTP/2 body ${slowBody.toFixed(0)} ms (headers 300 ms, request 600 ms)`)
  for (const ms of [handshakeMs, http1Ms, http2Ms]) assert.ok(ms !== undefined && ms >= 250 && ms < 2_500, `${ms} ms`)
  assert.equal(post.rstCode, constants.NGHTTP2_CANCEL)
  assert.ok(slowBody >= 550 && slowBody < 2_500, `${slowBody} ms`)
  assert.equal(publisher.closed || publisher.destroyed, false, 'only the stream was reset, not the connection')
  assert.equal((await request(`${url}/health`)).status, 200)
  assert.equal(stream.ended(), false, 'a stream is not a request in progress: it stays open')
})
