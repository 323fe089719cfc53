// `envelope=1`: each event's data names the topic it came for, so a page with one stream for several topics can
// tell them apart; plain streams stay byte for byte as they were. Both brokers, both protocols, real clients.
import assert from 'node:assert/strict'
import { after, before, test, type TestContext } from 'node:test'
import { EventSource } from 'eventsource'
import { buildFor, publish, PROTOCOLS, request, until, type Protocol } from './helper.js'
import { memoryFactory, redisFactory, subscribed, type HubFactory } from './helpers/brokers.js'
import { streamId } from './helpers/event-ids.js'
import { RedisServer } from './helpers/redis-server.js'
import { openStream } from './helpers/sse-client.js'

let redis: RedisServer
before(async () => { redis = await RedisServer.start() })
after(async () => await redis.stop())

const BROKERS = ['memory', 'redis'] as const
let prefixes = 0

async function herald (t: TestContext, broker: typeof BROKERS[number], protocol: Protocol, env: Record<string, string> = {}) {
  const brokerEnv: Record<string, string> = broker === 'redis' ? { REDIS_URL: redis.url, HERALD_REDIS_PREFIX: `envelope${++prefixes}:` } : {}
  return await buildFor(t, protocol, { ...brokerEnv, ...env })
}

/** An eventsource client (a WHATWG EventSource), over HTTP/2 for https:// URLs; every event it receives, by type. */
function eventSource (t: TestContext, url: string): { received: Array<{ type: string, id: string, data: unknown }>, opened: Promise<unknown> } {
  const source = new EventSource(url, { fetch: async (input, init) => await request(String(input), init as RequestInit) })
  t.after(() => source.close())
  const received: Array<{ type: string, id: string, data: unknown }> = []
  for (const type of ['message', 'tick']) source.addEventListener(type, (event) => received.push({ type, id: event.lastEventId, data: JSON.parse(event.data) }))
  const opened = new Promise((resolve, reject) => { source.onopen = resolve; source.onerror = reject })
  return { received, opened }
}

for (const [broker, protocol] of BROKERS.flatMap((broker) => PROTOCOLS.map((protocol) => [broker, protocol] as const))) {
  test(`${broker}, ${protocol}: with envelope=1 each event's data is {topic, data} for the topic it came for; id, type and retry stay; plain streams are unchanged byte for byte`, async (t) => {
    const { app, url } = await herald(t, broker, protocol, { HERALD_RETRY_MS: '1500' })
    const enveloped = eventSource(t, `${url}/v1/stream?topic=a&topic=b&envelope=1`)
    await enveloped.opened
    const raw = await openStream(`${url}/v1/stream?topic=a&topic=b&envelope=1`)
    const plain = await openStream(`${url}/v1/stream?topic=a&topic=b`)
    for (const client of [raw, plain]) t.after(client.close)
    await until(() => app.hub.listenerCount('a') === 3, 5_000, 'subscribed')

    const a1 = (await publish(url, { topic: 'a', data: { n: 1 }, type: 'tick' })).body.id
    const b1 = (await publish(url, { topic: 'b', data: 'two\nlines', retry: 5000 })).body.id
    // Several of the stream's topics: the first of them in publish order.
    const [, b2] = (await publish(url, { topic: ['c', 'b', 'a'], data: [3] })).body.ids
    await publish(url, { topic: 'c', data: 'not for us' })
    const [a3] = (await publish(url, { topic: ['a', 'b'], data: null })).body.ids
    // The stream's id is its position on a and on b; an event on both moves the other one silently, after it.
    const [one, two, three, four] = [[a1, ''], [a1, b1], [a1, b2], [a3, b2]].map((positions) => streamId(['a', 'b'], positions))
    await until(() => enveloped.received.length === 4 && raw.events.length === 4 && plain.events.length === 4, 5_000, 'four events on each stream')

    assert.deepEqual(enveloped.received, [
      { type: 'tick', id: one, data: { topic: 'a', data: { n: 1 } } },
      { type: 'message', id: two, data: { topic: 'b', data: 'two\nlines' } },
      { type: 'message', id: three, data: { topic: 'b', data: [3] } },
      { type: 'message', id: four, data: { topic: 'a', data: null } }
    ])
    assert.equal(raw.text(), ': herald\nretry: 1500\n' +
      `id: ${one}\nevent: tick\ndata: {"topic":"a","data":{"n":1}}\n\n` +
      `id: ${two}\nretry: 5000\ndata: {"topic":"b","data":"two\\nlines"}\n\n` +
      `id: ${three}\ndata: {"topic":"b","data":[3]}\n\n` +
      `id: ${four}\ndata: {"topic":"a","data":null}\n\n`)
    assert.equal(plain.text(), ': herald\nretry: 1500\n' +
      `id: ${one}\nevent: tick\ndata: {"n":1}\n\n` +
      `id: ${two}\nretry: 5000\ndata: "two\\nlines"\n\n` +
      `id: ${three}\ndata: [3]\n\n` +
      `id: ${four}\ndata: null\n\n`)
  })

  test(`${broker}, ${protocol}: a resumed enveloped stream gets the missed events enveloped (each for the first of the stream's topics that holds it); herald.reset is not enveloped`, async (t) => {
    const { app, url } = await herald(t, broker, protocol)
    const first = await openStream(`${url}/v1/stream?topic=a&topic=b&envelope=1`)
    await until(() => app.hub.listenerCount('a') === 1, 5_000, 'subscribed')
    await publish(url, { topic: 'a', data: 0 })
    const seen = (await first.waitForEvents(1))[0]?.id as string
    first.close()
    const a2 = (await publish(url, { topic: 'a', data: 1 })).body.id
    const [b1, a3] = (await publish(url, { topic: ['b', 'a'], data: 2 })).body.ids
    const b2 = (await publish(url, { topic: 'b', data: 3 })).body.id
    const resumed = await openStream(`${url}/v1/stream?topic=a&topic=b&envelope=1`, { 'last-event-id': seen })
    t.after(resumed.close)
    await resumed.waitForEvents(3)
    const [b3] = (await publish(url, { topic: ['b', 'a'], data: 4 })).body.ids
    await resumed.waitForEvents(4)
    const id = (positions: string[]) => streamId(['a', 'b'], positions)
    assert.deepEqual(resumed.events.map((event) => ({ id: event.id, data: JSON.parse(event.data) })), [
      // History replays topic after topic; an event on both is shown for the first of its topics in publish order.
      { id: id([a2, '']), data: { topic: 'a', data: 1 } },
      { id: id([a3, b1]), data: { topic: 'b', data: 2 } },
      { id: id([a3, b2]), data: { topic: 'b', data: 3 } },
      { id: id([a3, b3]), data: { topic: 'b', data: 4 } }
    ])

    const reset = await openStream(`${url}/v1/stream?topic=a&envelope=1`, { 'last-event-id': 'not-an-id' })
    t.after(reset.close)
    await reset.waitForEvents(1)
    assert.equal(reset.events[0]?.event, 'herald.reset')
    assert.deepEqual(JSON.parse(reset.events[0]?.data ?? ''), { reason: 'malformed-id', topics: ['a'], lastEventId: 'not-an-id' })
  })
}

for (const broker of BROKERS) {
  test(`${broker}: an enveloped frame is encoded once per event and topic, the same bytes for every stream that asked`, async (t) => {
    const factory: HubFactory = broker === 'memory' ? memoryFactory() : redisFactory(redis)
    const { hub, close } = await factory()
    t.after(close)
    // The first publish makes Redis's epoch; live events of an epoch a stream has not seen yet go through a catch-up.
    await hub.publish({ topics: ['other'], data: '0' })
    const subscriptions = [
      hub.subscribe(['a'], undefined, { envelope: true }),
      hub.subscribe(['a'], undefined, { envelope: true }),
      hub.subscribe(['b', 'a'], undefined, { envelope: true }),
      hub.subscribe(['b'], undefined, { envelope: true }),
      hub.subscribe(['a'])
    ]
    const chunks = subscriptions.map((subscription) => {
      const received: Buffer[] = []
      subscription.on('data', (chunk: Buffer) => received.push(chunk))
      return received
    })
    for (const subscription of subscriptions) await subscribed(subscription)
    await hub.publish({ topics: ['a', 'b'], data: '1' })
    await until(() => chunks.every((received) => received.length === 1), 5_000, 'the event on every stream')
    const [forA, alsoForA, firstOfAB, forB, plain] = chunks.map((received) => received[0] as Buffer)
    assert.ok(forA === alsoForA, 'one Buffer for topic a, shared')
    assert.ok(forB !== forA && plain !== forA)
    assert.match(forA?.toString() ?? '', /data: \{"topic":"a","data":1\}/)
    assert.match(forB?.toString() ?? '', /data: \{"topic":"b","data":1\}/)
    // A multi-topic stream writes its own id (its position on b and a), then the same bytes as the frame for a.
    const onA = forA?.toString() ?? ''
    assert.equal(firstOfAB?.toString(), `id: ${streamId(['b', 'a'], ['', onA.slice(4, onA.indexOf('\n'))])}\n${onA.slice(onA.indexOf('\n') + 1)}`)
  })
}

test('envelope takes 0 or 1 only: anything else is a 400 that names it', async (t) => {
  const { url } = await buildFor(t, 'http/1.1')
  const response = await fetch(`${url}/v1/stream?topic=chat&envelope=yes`)
  assert.equal(response.status, 400)
  assert.match(((await response.json()) as { message: string }).message, /envelope/)
})
