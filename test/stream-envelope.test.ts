import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { build, publish } from './helper.js'
import { RedisServer } from './helpers/redis-server.js'
import { openStream } from './helpers/sse-client.js'

let redis: RedisServer
before(async () => { redis = await RedisServer.start() })
after(async () => await redis.stop())

let prefixes = 0

for (const broker of ['memory', 'redis'] as const) {
  test(`${broker}: envelope=1 wraps each event's data with its topic, live and replayed; other streams are unchanged`, async (t) => {
    const env: Record<string, string> = broker === 'redis' ? { REDIS_URL: redis.url, HERALD_REDIS_PREFIX: `envelope${++prefixes}:` } : {}
    const { url } = await build(t, env)
    const first = await publish(url, { topic: 'news', data: { headline: 'old' } })
    const enveloped = await openStream(`${url}/v1/stream?topic=chat&topic=news&envelope=1&lastEventId=0`)
    const plain = await openStream(`${url}/v1/stream?topic=chat&topic=news`)
    t.after(() => { enveloped.close(); plain.close() })
    const both = await publish(url, { topic: ['news', 'chat'], data: 'both', type: 'note' })
    const chat = await publish(url, { topic: 'chat', data: { user: 'ada', text: 'hello\nthere' } })

    const events = await enveloped.waitForEvents(3)
    const bothTopic = JSON.parse(events[1]?.data ?? '{}').topic
    // Once, named by one of its topics that the stream has.
    assert.ok(bothTopic === 'news' || bothTopic === 'chat', String(bothTopic))
    assert.deepEqual(events.map((event) => [event.id, event.event, JSON.parse(event.data)]), [
      [first.body.id, 'message', { topic: 'news', data: { headline: 'old' } }],
      [both.body.id, 'note', { topic: bothTopic, data: 'both' }],
      [chat.body.id, 'message', { topic: 'chat', data: { user: 'ada', text: 'hello\nthere' } }]
    ])
    // Replayed, an event on several topics is named the same way: a resume from before it.
    const resumed = await openStream(`${url}/v1/stream?topic=news&topic=chat&envelope=1&lastEventId=${first.body.id as string}`)
    t.after(resumed.close)
    const replayed = await resumed.waitForEvents(2)
    assert.deepEqual(replayed.map((event) => JSON.parse(event.data).topic), ['news', 'chat'])
    const unchanged = await plain.waitForEvents(2)
    assert.deepEqual(unchanged.map((event) => JSON.parse(event.data)), ['both', { user: 'ada', text: 'hello\nthere' }])
  })
}

test('envelope takes 0 or 1 only', async (t) => {
  const { url } = await build(t)
  const response = await fetch(`${url}/v1/stream?topic=chat&envelope=yes`)
  assert.equal(response.status, 400)
})
