// HTTP/2 rapid reset (CVE-2023-44487): a client that opens streams and resets each at once (raw HEADERS +
// RST_STREAM frames) has its connection cut at once, counted and logged (rate-limited), while others publish on.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { connect as tlsConnect, type TLSSocket } from 'node:tls'
import { buildFor, publish, until } from './helper.js'
import { headersFrame, PREFACE, rstStreamFrame, settingsFrame } from './helpers/h2-frames.js'
import { scrape } from './helpers/metrics.js'
import { openStream } from './helpers/sse-client.js'
import { testCertificate } from './helpers/tls.js'

/** One attacking connection: HEADERS + RST_STREAM pairs until the server closes it or `maxStreams` are sent. */
async function rapidReset (port: number, maxStreams: number): Promise<{ streams: number, closedByServer: boolean, ms: number }> {
  const socket: TLSSocket = tlsConnect({ port, host: '127.0.0.1', ALPNProtocols: ['h2'], ca: testCertificate().ca, servername: 'localhost' })
  socket.on('error', () => {})
  socket.on('data', () => {})
  const closed = new Promise((resolve) => socket.once('close', resolve))
  await new Promise((resolve) => socket.once('secureConnect', resolve))
  assert.equal(socket.alpnProtocol, 'h2')
  const startedAt = performance.now()
  socket.write(Buffer.concat([PREFACE, settingsFrame()]))
  let streams = 0
  while (streams < maxStreams && !socket.destroyed) {
    const batch: Buffer[] = []
    for (let index = 0; index < 20 && streams < maxStreams; index++, streams++) {
      const id = 2 * streams + 1
      batch.push(headersFrame(id, '/v1/stream?topic=attack'), rstStreamFrame(id))
    }
    socket.write(Buffer.concat(batch))
    await new Promise((resolve) => setImmediate(resolve))
  }
  const closedByServer = await Promise.race([closed.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 5_000))])
  socket.destroy()
  return { streams, closedByServer, ms: performance.now() - startedAt }
}

function p99 (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))] ?? 0
}

test('h2 rapid reset: each attacking connection is cut at once, counted and logged once; other clients publish and receive on', { timeout: 120_000 }, async (t) => {
  const { app, url, log } = await buildFor(t, 'h2', { LOG_LEVEL: 'info' })
  const port = Number(new URL(url).port)
  const reader = await openStream(`${url}/v1/stream?topic=others`)
  t.after(() => reader.close())

  const timings: number[] = []
  const state = { publishing: true }
  const statuses: number[] = []
  const publisher = (async () => {
    while (state.publishing) {
      const startedAt = performance.now()
      statuses.push((await publish(url, { topic: 'others', data: statuses.length })).status)
      timings.push(performance.now() - startedAt)
    }
  })()
  await until(() => timings.length >= 20, 10_000, 'publishing')
  const before = p99(timings)
  const calmCount = timings.length

  const attacks = []
  for (let attempt = 0; attempt < 5; attempt++) attacks.push(await rapidReset(port, 5_000))
  state.publishing = false
  await publisher
  const during = p99(timings.slice(calmCount))

  const metrics = await scrape(app)
  const closed = metrics.value('herald_http2_sessions_closed_total', { reason: 'rapid-reset' })
  const warnings = log.filter((line) => line.level === 40 && line.reason === 'rapid-reset')
  t.diagnostic(`5 attacking connections: streams sent before the cut ${attacks.map((attack) => attack.streams).join(', ')} (limit 100 reset streams per 10 s), cut after ${attacks.map((attack) => attack.ms.toFixed(0)).join(', ')} ms; herald_http2_sessions_closed_total{reason="rapid-reset"} ${String(closed)}; ${warnings.length} warn line(s): ${String(warnings[0]?.msg)}; other clients' publish p99 ${before.toFixed(1)} ms before, ${during.toFixed(1)} ms during (${timings.length - calmCount} publishes)`)

  for (const attack of attacks) {
    assert.ok(attack.closedByServer, 'the server closed the attacking connection')
    // nghttp2 alone lets about 1,000 through before its GOAWAY, and keeps the socket open.
    assert.ok(attack.streams < 1_000, `${attack.streams} streams before the cut`)
  }
  assert.equal(closed, 5)
  assert.equal(warnings.length, 1, 'logged once for a burst of attacks, with a count')
  assert.ok(statuses.every((status) => status === 202), `publishes: ${[...new Set(statuses)].join(', ')}`)
  const last = statuses.length - 1
  await until(() => reader.events.some((event) => JSON.parse(event.data) === last), 5_000, 'the last event on a stream of another client')
  assert.equal(app.hub.listenerCount('attack'), 0, 'no attacking stream is left open')
})
