import assert from 'node:assert/strict'
import { get } from 'node:http'
import { connect } from 'node:net'
import { test } from 'node:test'
import { SseParser } from '../src/sse/parser.js'
import { until } from './helper.js'
import { HeraldProcess } from './helpers/herald-process.js'

/** A light client that only counts events and keeps the last, so 100 of them cost the test little. */
function countingClient (url: string): { count: () => number, last: () => string, close: () => void } {
  let count = 0
  let last = ''
  const parser = new SseParser((event) => { count++; last = event.data })
  const request = get(url, (response) => {
    response.setEncoding('utf8')
    response.on('data', (chunk: string) => parser.push(chunk))
  })
  request.on('error', () => {})
  return { count: () => count, last: () => last, close: () => request.destroy() }
}

async function subscriptions (url: string): Promise<number> {
  return ((await (await fetch(`${url}/health`)).json()) as { subscriptions: number }).subscriptions
}

test('a client that stops reading is cut off at the cap; 100 others get everything; the server holds at most the cap for it', { timeout: 90_000 }, async (t) => {
  const server = await HeraldProcess.start({ HERALD_MAX_QUEUE_BYTES: '65536', LOG_LEVEL: 'info' })
  t.after(async () => await server.kill('SIGTERM'))
  const normal = Array.from({ length: 100 }, () => countingClient(`${server.url}/v1/stream?topic=firehose`))
  t.after(() => { for (const client of normal) client.close() })

  // A raw socket that asks for the stream and then never reads a byte.
  const slow = connect(server.port, '127.0.0.1')
  slow.on('error', () => {})
  t.after(() => slow.destroy())
  slow.write('GET /v1/stream?topic=firehose HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n')
  slow.pause()
  await until(async () => await subscriptions(server.url) === 101, 5_000, 'all subscribed')

  const payload = 'x'.repeat(1024)
  let published = 0
  // Up to 40 events (40 KiB, under the default body limit) a request, through the batch route (in order on the
  // topic): the same stream of frames as single publishes, in a fraction of the time.
  const publishBatch = async (count: number): Promise<void> => {
    for (let sent = 0; sent < count;) {
      const events = Array.from({ length: Math.min(40, count - sent) }, (_, index) => ({ topic: 'firehose', data: { n: published + index, payload } }))
      const reply = await fetch(`${server.url}/v1/events/batch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ events }) })
      assert.equal(reply.status, 202, await reply.text())
      published += events.length
      sent += events.length
    }
  }
  await publishBatch(200)
  const rssBefore = server.rssBytes()
  const grownMiB = () => (server.rssBytes() - rssBefore) / 2 ** 20
  // Generous: healthy runs grow 3-40 MiB here (heap growth of the fan-out to 100 clients); per-client copies
  // of frames kept for the slow client or for everyone would pass it within a few thousand events.
  const boundMiB = 128
  // The kernel's socket buffers take a few MB before the server sees any backlog (~4k events here).
  for (let batch = 0; batch < 100 && grownMiB() < boundMiB && await subscriptions(server.url) === 101; batch++) await publishBatch(100)
  assert.ok(grownMiB() < boundMiB, `server RSS grew ${grownMiB().toFixed(1)} MiB before the slow client was cut off`)
  assert.equal(await subscriptions(server.url), 100, `slow client still subscribed after ${published} events`)
  const droppedAfter = published
  // Five more MB that the slow client would have queued without the cap.
  await publishBatch(5_000)

  await until(() => normal.every((client) => client.count() === published), 60_000, 'every normal client to get every event')
  for (const client of normal) assert.equal(JSON.parse(client.last()).n, published - 1)
  // What the server held for the slow client when it let go: the cap, plus at most the event that crossed it.
  const line = server.output().split('\n').find((entry) => entry.includes('"reason":"slow-client"'))
  assert.ok(line !== undefined, 'the disconnect is logged')
  const logged = JSON.parse(line) as { level: number, msg: string, queuedBytes: number, limit: number }
  assert.equal(logged.msg, 'stream closed')
  assert.equal(logged.level, 30, 'logged at info: a slow client is not a server error')
  assert.equal(logged.limit, 65_536)
  assert.ok(logged.queuedBytes <= 65_536 + 2_048, `held ${logged.queuedBytes} bytes`)
  const grown = grownMiB()
  t.diagnostic(`slow client dropped after ${droppedAfter} events of ~1 KiB holding ${logged.queuedBytes} bytes; ${published} published; server RSS grew ${grown.toFixed(1)} MiB meanwhile`)
  assert.ok(grown < boundMiB, `server RSS grew ${grown.toFixed(1)} MiB over the run (bound ${boundMiB} MiB)`)
})
