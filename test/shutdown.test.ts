// Shutdown is bounded: SIGTERM with clients that stopped reading still ends within the drain window and a
// second, exit code 0; app.close() never waits on a connection whose client does not read (HTTP/1.1, HTTP/2).
import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { test, type TestContext } from 'node:test'
import { connect as tlsConnect } from 'node:tls'
import { buildFor, publish, until } from './helper.js'
import { headersFrame, PREFACE, settingsFrame } from './helpers/h2-frames.js'
import { HeraldProcess } from './helpers/herald-process.js'
import { openStream } from './helpers/sse-client.js'
import { testCertificate } from './helpers/tls.js'

/** A client that asks for a stream over HTTP/1.1 and then never reads a byte (nor sees the server's FIN). */
async function stalledClient (t: TestContext, port: number, topic: string): Promise<Socket> {
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  t.after(() => socket.destroy())
  await new Promise((resolve) => socket.once('connect', resolve))
  socket.write(`GET /v1/stream?topic=${topic} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n`)
  socket.pause()
  return socket
}

async function subscriptions (url: string): Promise<number> {
  return ((await (await fetch(`${url}/health`)).json()) as { subscriptions: number }).subscriptions
}

test('SIGTERM with 100 stalled clients among 400 streams and the default drain: exit 0 within the drain window and a second', { timeout: 180_000 }, async (t) => {
  const drainMs = 5_000
  const herald = await HeraldProcess.start({ HERALD_DRAIN_MS: String(drainMs), HERALD_MAX_STREAMS_PER_ADDRESS: '0', LOG_LEVEL: 'info' })
  t.after(async () => await herald.kill())
  const readers = await Promise.all(Array.from({ length: 300 }, async () => await openStream(`${herald.url}/v1/stream?topic=shutdown`)))
  t.after(() => { for (const reader of readers) reader.close() })
  for (let index = 0; index < 100; index++) await stalledClient(t, herald.port, 'shutdown')
  await until(async () => await subscriptions(herald.url) === 400, 30_000, '400 streams')

  const startedAt = performance.now()
  const exitCode = await herald.kill('SIGTERM')
  const exitMs = performance.now() - startedAt
  const resetLine = herald.output().split('\n').find((line) => line.includes('closing: reset'))
  t.diagnostic(`SIGTERM, 300 reading + 100 stalled streams, HERALD_DRAIN_MS=${drainMs}: exit ${exitCode} after ${exitMs.toFixed(0)} ms; ${resetLine === undefined ? 'nothing reset' : JSON.parse(resetLine).msg}`)
  assert.doesNotMatch(herald.output(), /killed by timeout/)
  assert.equal(exitCode, 0)
  assert.ok(readers.every((reader) => reader.ended()), 'every reading client was ended')
  // The window, the close's flush second, and slack for a loaded machine: within Docker's 10 s stop timeout.
  assert.ok(exitMs < 9_000, `exited after ${exitMs.toFixed(0)} ms`)
})

test('app.close() does not wait for an HTTP/2 client that stopped reading after its stream ended (drained): its connection is reset', { timeout: 60_000 }, async (t) => {
  const { app, url } = await buildFor(t, 'h2', { LOG_LEVEL: 'silent', HERALD_DRAIN_MS: '200' })
  const port = Number(new URL(url).port)
  // Raw frames: a preface, SETTINGS and one stream's HEADERS, then nothing is read again (no SETTINGS ack, no
  // WINDOW_UPDATE), so the server's bytes for it never leave.
  const socket = tlsConnect({ port, host: '127.0.0.1', ALPNProtocols: ['h2'], ca: testCertificate().ca, servername: 'localhost' })
  socket.on('error', () => {})
  t.after(() => socket.destroy())
  await new Promise((resolve) => socket.once('secureConnect', resolve))
  assert.equal(socket.alpnProtocol, 'h2')
  socket.write(Buffer.concat([PREFACE, settingsFrame(), headersFrame(1, '/v1/stream?topic=close')]))
  socket.pause()
  await until(() => app.hub.streamCount === 1, 10_000, 'the stream open')
  // More than the stream's flow-control window (64 KiB): the rest waits in the server for a WINDOW_UPDATE.
  for (let index = 0; index < 4; index++) assert.equal((await publish(url, { topic: 'close', data: 'x'.repeat(30_000) })).status, 202)
  await app.drain()
  const startedAt = performance.now()
  await Promise.race([app.close(), new Promise((_resolve, reject) => setTimeout(() => reject(new Error('app.close() still waits after 10 s')), 10_000).unref())])
  const closeMs = performance.now() - startedAt
  t.diagnostic(`app.close() after a drain with a stalled HTTP/2 client took ${closeMs.toFixed(0)} ms`)
  assert.ok(closeMs < 5_000, `took ${closeMs.toFixed(0)} ms`)
})

test('app.close() does not wait for an HTTP/1.1 client that stopped reading after its stream ended (drained)', { timeout: 60_000 }, async (t) => {
  const { app, url } = await buildFor(t, 'http/1.1', { LOG_LEVEL: 'silent', HERALD_DRAIN_MS: '200' })
  await stalledClient(t, Number(new URL(url).port), 'close')
  await until(() => app.hub.streamCount === 1, 10_000, 'the stream open')
  await app.drain()
  const startedAt = performance.now()
  await Promise.race([app.close(), new Promise((_resolve, reject) => setTimeout(() => reject(new Error('app.close() still waits after 10 s')), 10_000).unref())])
  const closeMs = performance.now() - startedAt
  t.diagnostic(`app.close() after a drain with a stalled HTTP/1.1 client took ${closeMs.toFixed(0)} ms`)
  assert.ok(closeMs < 5_000, `took ${closeMs.toFixed(0)} ms`)
})
