import assert from 'node:assert/strict'
import { createHook } from 'node:async_hooks'
import { connect } from 'node:net'
import { test } from 'node:test'
import { EventSource } from 'eventsource'
import { SseParser } from '../src/sse/parser.js'
import { build, buildFor, publish, PROTOCOLS, request, until } from './helper.js'
import { streamId } from './helpers/event-ids.js'
import { openStream, payloads } from './helpers/sse-client.js'
import { startProxy } from './helpers/tcp-proxy.js'

for (const protocol of PROTOCOLS) {
  test(`${protocol}: a stream answers text/event-stream with anti-buffering headers and the opening at once`, async (t) => {
    const { url } = await buildFor(t, protocol, { HERALD_RETRY_MS: '1500' })
    const client = await openStream(`${url}/v1/stream?topic=chat`)
    t.after(client.close)
    assert.equal(client.protocol, protocol)
    assert.equal(client.status, 200)
    assert.equal(client.headers['content-type'], 'text/event-stream; charset=utf-8')
    assert.equal(client.headers['cache-control'], 'no-cache, no-transform')
    assert.equal(client.headers['x-accel-buffering'], 'no')
    // HTTP/1.1: the body runs until the connection closes; HTTP/2 has no Connection header, the stream ends.
    assert.equal(client.headers.connection, protocol === 'h2' ? undefined : 'close')
    await until(() => client.text().includes('retry: 1500\n'), 2_000, 'the opening')
    assert.equal(client.text(), ': herald\nretry: 1500\n')
  })

  test(`${protocol}: events carry id, event type and JSON data; several topics on one stream`, async (t) => {
    const { url } = await buildFor(t, protocol)
    const client = await openStream(`${url}/v1/stream?topic=a&topic=b`)
    t.after(client.close)
    const first = await publish(url, { topic: 'a', data: { n: 1 }, type: 'tick' })
    const second = await publish(url, { topic: ['a', 'b'], data: 'both' })
    await publish(url, { topic: 'c', data: 'not for us' })
    const third = await publish(url, { topic: 'b', data: [3], retry: 5000 })
    assert.equal(first.status, 202)
    assert.deepEqual(second.body, { ids: second.body.ids, topics: ['a', 'b'], duplicate: false })
    const events = await client.waitForEvents(3)
    // A multi-topic stream's id is its position on each of its topics; the event on a and b is shown once, for a,
    // with b's position not seen yet.
    const [a1, a2, b2] = [first.body.id, second.body.ids[0], third.body.id] as string[]
    assert.deepEqual(events.map((event) => event.id), [streamId(['a', 'b'], [a1, '']), streamId(['a', 'b'], [a2, '']), streamId(['a', 'b'], [a2, b2])])
    assert.deepEqual(events.map((event) => event.event), ['tick', 'message', 'message'])
    assert.deepEqual(payloads(events), [{ n: 1 }, 'both', [3]])
    assert.equal(events[2]?.retry, 5000)
  })
}

/**
 * Counts live Timeout handles created from now on, unref'd ones included: process.getActiveResourcesInfo()
 * lists only timers that keep the process alive, and heartbeat timers are unref'd.
 */
function liveTimeouts (): { count: () => number, stop: () => void } {
  const live = new Set<number>()
  const hook = createHook({
    init: (id, type) => { if (type === 'Timeout') live.add(id) },
    destroy: (id) => { live.delete(id) }
  }).enable()
  return { count: () => live.size, stop: () => { hook.disable() } }
}

/** A stream read over a bare socket: unlike http.request's agent, it adds no timer of its own to count. */
function bareStream (url: string, path: string): { comments: () => number, close: () => void } {
  const { port } = new URL(url)
  const parser = new SseParser(() => {})
  const socket = connect(Number(port), '127.0.0.1')
  socket.on('error', () => {})
  socket.setEncoding('utf8')
  socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n`)
  let head = ''
  socket.on('data', (chunk: string) => {
    if (head.includes('\r\n\r\n')) return parser.push(chunk)
    head += chunk
    const end = head.indexOf('\r\n\r\n')
    if (end !== -1) parser.push(head.slice(end + 4))
  })
  return { comments: () => parser.comments, close: () => socket.destroy() }
}

test('heartbeat comments flow from one shared timer: 50 streams hold no more timers than 1', async (t) => {
  const { url } = await build(t, { HERALD_HEARTBEAT_MS: '50' })
  const timers = liveTimeouts()
  t.after(timers.stop)
  const streams = [bareStream(url, '/v1/stream?topic=h')]
  t.after(() => { for (const stream of streams) stream.close() })
  // The opening comment, then heartbeats.
  await until(() => streams.every((stream) => stream.comments() >= 4), 3_000, 'heartbeats on one stream')
  const withOne = timers.count()
  for (let index = 1; index < 50; index++) streams.push(bareStream(url, '/v1/stream?topic=h'))
  await until(() => streams.every((stream) => stream.comments() >= 4), 5_000, 'heartbeats on every stream')
  const withFifty = timers.count()
  t.diagnostic(`live timers: ${withOne} with 1 stream, ${withFifty} with 50`)
  assert.ok(withFifty - withOne < 10, `49 more streams added ${withFifty - withOne} timers`)
})

for (const protocol of PROTOCOLS) {
  test(`${protocol}: closing the client releases the subscription`, async (t) => {
    const { app, url } = await buildFor(t, protocol)
    const client = await openStream(`${url}/v1/stream?topic=bye&topic=bye2`)
    await until(() => app.hub.listenerCount('bye') === 1, 2_000, 'subscribed')
    client.close()
    await until(() => app.hub.listenerCount('bye') === 0 && app.hub.streamCount === 0, 2_000, 'released')
    assert.equal(app.hub.listenerCount('bye2'), 0)
  })

  test(`${protocol}: bad stream requests get 400 with a reason, before any stream byte`, async (t) => {
    const { url } = await buildFor(t, protocol, { HERALD_MAX_TOPICS_PER_STREAM: '2' })
    const cases: Array<[string, RegExp]> = [
      ['/v1/stream', /must have 'topic'/],
      ['/v1/stream?topic=', /topic/],
      ['/v1/stream?topic=a%20b', /topic name/],
      ['/v1/stream?topic=a%0Adata:x', /topic name/],
      [`/v1/stream?topic=${'x'.repeat(257)}`, /topic name/],
      ['/v1/stream?topic=a&topic=b&topic=c', /at most 2 topics/],
      ['/v1/stream?topic=a&envelope=yes', /envelope/]
    ]
    for (const [path, message] of cases) {
      const response = await request(url + path)
      assert.equal(response.status, 400, path)
      assert.match(response.headers.get('content-type') ?? '', /application\/json/)
      const body = await response.json() as { message: string }
      assert.match(body.message, message, path)
    }
    const atLimit = await openStream(`${url}/v1/stream?topic=a&topic=b`)
    atLimit.close()
    assert.equal(atLimit.status, 200)
  })

  test(`${protocol}: Last-Event-ID header and lastEventId query parameter resume with exactly the missed events`, async (t) => {
    const { url } = await buildFor(t, protocol)
    const seen = await publish(url, { topic: 'r', data: 0 })
    const missed = []
    for (let index = 1; index <= 5; index++) missed.push((await publish(url, { topic: 'r', data: index })).body.id)
    const viaHeader: Record<string, string> = { 'last-event-id': seen.body.id }
    for (const headers of [viaHeader, {}]) {
      const query = 'last-event-id' in headers ? '' : `&lastEventId=${seen.body.id}`
      const client = await openStream(`${url}/v1/stream?topic=r${query}`, headers)
      const events = await client.waitForEvents(5)
      client.close()
      assert.deepEqual(events.map((event) => event.id), missed)
      assert.deepEqual(payloads(events), [1, 2, 3, 4, 5])
    }
  })

  test(`${protocol}: a Last-Event-ID header beats the lastEventId query parameter, which EventSource sends again on every reconnect`, async (t) => {
    const { url } = await buildFor(t, protocol)
    const ids: string[] = []
    for (let index = 0; index < 4; index++) ids.push((await publish(url, { topic: 'q', data: index })).body.id)
    // new EventSource('…?lastEventId=<first>') after it got up to the third: it reconnects to the same URL, with
    // the header saying how far it got.
    const client = await openStream(`${url}/v1/stream?topic=q&lastEventId=${ids[0] as string}`, { 'last-event-id': ids[2] as string })
    t.after(client.close)
    await client.waitForEvents(1)
    const live = (await publish(url, { topic: 'q', data: 'live' })).body.id
    await until(() => client.events.some((event) => event.id === live), 5_000, 'the live event')
    assert.deepEqual(client.events.map((event) => event.id), [ids[3], live],
      `resumed after the header's ${ids[2] as string}, not the query's ${ids[0] as string}: nothing the client already has comes again`)
  })
}

test('the eventsource client sees exactly what was published, line breaks included', async (t) => {
  const { url } = await build(t, { HERALD_RETRY_MS: '100' })
  const values = ['plain', 'two\nlines', 'cr\ronly', 'crlf\r\nend', '\n\nevent: injected\ndata: x\n\n', { nested: 'a\r\nb' }, '', null, 42, ['data: x']]
  const source = new EventSource(`${url}/v1/stream?topic=es`)
  t.after(() => source.close())
  const received: Array<{ type: string, data: unknown, id: string }> = []
  const listen = (type: string) => source.addEventListener(type, (event) => received.push({ type, data: JSON.parse(event.data), id: event.lastEventId }))
  listen('message')
  listen('injected')
  await new Promise((resolve, reject) => { source.onopen = resolve; source.onerror = reject })
  const ids = []
  for (const value of values) ids.push((await publish(url, { topic: 'es', data: value })).body.id)
  await until(() => received.length >= values.length, 3_000, 'eventsource events')
  assert.deepEqual(received.map((event) => event.data), values)
  assert.ok(received.every((event) => event.type === 'message'), 'no injected event type')
  assert.deepEqual(received.map((event) => event.id), ids)
})

test('an eventsource client cut off mid-stream reconnects with Last-Event-ID and misses nothing', async (t) => {
  const { app, url } = await build(t, { HERALD_RETRY_MS: '50' })
  const port = (app.server.address() as { port: number }).port
  const proxy = await startProxy(port)
  t.after(proxy.close)
  const source = new EventSource(`${proxy.url}/v1/stream?topic=drop`)
  t.after(() => source.close())
  const received: number[] = []
  source.onmessage = (event) => received.push(JSON.parse(event.data))
  let opens = 0
  source.onopen = () => { opens++ }
  await until(() => opens === 1, 2_000, 'open')
  for (let index = 0; index < 5; index++) await publish(url, { topic: 'drop', data: index })
  await until(() => received.length === 5, 2_000, 'first five')
  proxy.cut()
  for (let index = 5; index < 10; index++) await publish(url, { topic: 'drop', data: index })
  await until(() => opens === 2, 3_000, 'reconnect')
  for (let index = 10; index < 12; index++) await publish(url, { topic: 'drop', data: index })
  await until(() => received.length >= 12, 3_000, 'all twelve')
  assert.deepEqual(received, [...Array(12).keys()])
})
