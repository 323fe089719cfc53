import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { SlowConsumerError, type StreamMessage } from '../src/broker/subscription.js'
import { until } from './helper.js'
import { collect, memoryFactory, redisFactory, subscribed, type BrokerFactory } from './helpers/brokers.js'
import { RedisServer } from './helpers/redis-server.js'

let redis: RedisServer
before(async () => { redis = await RedisServer.start() })
after(async () => { await redis.stop() })

const kinds: Array<[string, () => BrokerFactory]> = [
  ['memory', () => memoryFactory()],
  ['redis', () => redisFactory(redis)]
]

const data = (value: unknown) => JSON.stringify(value)
const frameText = (message: StreamMessage | undefined) => message !== undefined && 'frame' in message ? message.frame.toString() : ''

for (const [kind, factoryOf] of kinds) {
  describe(`broker contract: ${kind}`, () => {
    test('delivers an event to a subscriber of its topic, framed once as SSE', async (t) => {
      const { broker, close } = await factoryOf()()
      t.after(close)
      const subscription = broker.subscribe(['chat'])
      const received = collect(subscription)
      await subscribed(subscription)
      const published = await broker.publish({ topics: ['chat'], data: data({ text: 'hi' }), type: 'message' })
      await received.waitFor(1)
      assert.deepEqual(received.ids(), [Number(published.id)])
      assert.equal(frameText(received.messages[0]), `id: ${published.id}\nevent: message\ndata: {"text":"hi"}\n\n`)
      subscription.destroy()
    })

    test('ids grow with publish order and events arrive in that order', async (t) => {
      const { broker, close } = await factoryOf()()
      t.after(close)
      const subscription = broker.subscribe(['a'])
      const received = collect(subscription)
      await subscribed(subscription)
      const ids: number[] = []
      for (let index = 0; index < 50; index++) ids.push(Number((await broker.publish({ topics: ['a'], data: data(index) })).id))
      assert.deepEqual(ids, [...ids].sort((x, y) => x - y))
      assert.equal(new Set(ids).size, ids.length)
      await received.waitFor(50)
      assert.deepEqual(received.ids(), ids)
    })

    test('one connection, several topics: each event once, none from other topics', async (t) => {
      const { broker, close } = await factoryOf()()
      t.after(close)
      const both = broker.subscribe(['a', 'b'])
      const onlyB = broker.subscribe(['b'])
      const onlyC = broker.subscribe(['c'])
      const receivedBoth = collect(both)
      const receivedB = collect(onlyB)
      const receivedC = collect(onlyC)
      await Promise.all([subscribed(both), subscribed(onlyB), subscribed(onlyC)])
      const first = await broker.publish({ topics: ['a'], data: data(1) })
      const second = await broker.publish({ topics: ['a', 'b'], data: data(2) })
      const third = await broker.publish({ topics: ['b'], data: data(3) })
      const fourth = await broker.publish({ topics: ['c'], data: data(4) })
      const ids = [first, second, third, fourth].map((published) => Number(published.id))
      assert.equal(new Set(ids).size, 4, 'an event on several topics takes one id, not one per topic')
      await receivedBoth.waitFor(3)
      await receivedB.waitFor(2)
      await receivedC.waitFor(1)
      // Time for a duplicate or a stray event, which should not come, to arrive.
      await new Promise((resolve) => setTimeout(resolve, 50))
      assert.deepEqual(receivedBoth.ids(), [ids[0], ids[1], ids[2]])
      // The event on a and b reaches b's subscribers too, under the same id: it went to both topics.
      assert.deepEqual(receivedB.ids(), [ids[1], ids[2]])
      assert.deepEqual(receivedC.ids(), [ids[3]])
    })

    test('releases every listener and upstream subscription when the last subscriber leaves', async (t) => {
      const setup = await factoryOf()()
      t.after(setup.close)
      const { broker } = setup
      const one = broker.subscribe(['x', 'y'])
      const two = broker.subscribe(['x'])
      await Promise.all([subscribed(one), subscribed(two)])
      assert.equal(broker.listenerCount('x'), 2)
      assert.equal(await setup.upstreamSubscribers('x'), kind === 'redis' ? 1 : 2, 'one upstream subscription per topic')
      one.destroy()
      assert.equal(broker.listenerCount('x'), 1)
      assert.equal(broker.listenerCount('y'), 0)
      two.destroy()
      assert.equal(broker.listenerCount('x'), 0)
      assert.equal(broker.subscriptionCount, 0)
      await until(async () => await setup.upstreamSubscribers('x') === 0 && await setup.upstreamSubscribers('y') === 0, 5_000, 'unsubscribe')
    })

    test('resumes after Last-Event-ID with exactly the missed events, in order, on several topics', async (t) => {
      const { broker, close } = await factoryOf()()
      t.after(close)
      const before = await broker.publish({ topics: ['a'], data: data('seen') })
      const missed: number[] = []
      for (let index = 0; index < 10; index++) {
        missed.push(Number((await broker.publish({ topics: [index % 2 === 0 ? 'a' : 'b'], data: data(index) })).id))
        await broker.publish({ topics: ['other'], data: data(index) })
      }
      missed.push(Number((await broker.publish({ topics: ['a', 'b'], data: data('both') })).id))
      const subscription = broker.subscribe(['a', 'b'], { lastEventId: before.id })
      const received = collect(subscription)
      await received.waitFor(missed.length)
      const live = await broker.publish({ topics: ['b'], data: data('live') })
      await received.waitFor(missed.length + 1)
      assert.deepEqual(received.ids(), [...missed, Number(live.id)])
      assert.ok(received.messages.every((message) => 'frame' in message), 'no reset when history covers the gap')
    })

    test('hand-over from history to live has no gap and no duplicate under concurrent publishing', async (t) => {
      const { broker, close } = await factoryOf()()
      t.after(close)
      const published: number[] = []
      const state = { publishing: true }
      const publisher = (async () => {
        while (state.publishing) {
          published.push(Number((await broker.publish({ topics: ['race'], data: data(published.length) })).id))
          // The memory broker answers without I/O: let timers and the subscribers run.
          await new Promise((resolve) => setImmediate(resolve))
        }
      })()
      const clients = []
      for (let index = 0; index < 10; index++) {
        await new Promise((resolve) => setTimeout(resolve, 5))
        const start = published.at(-1) ?? 0
        const subscription = broker.subscribe(['race'], { lastEventId: String(start) })
        clients.push({ start, received: collect(subscription) })
      }
      await new Promise((resolve) => setTimeout(resolve, 100))
      state.publishing = false
      await publisher
      for (const { start, received } of clients) {
        const expected = published.filter((id) => id > start)
        await received.waitFor(expected.length)
        assert.deepEqual(received.ids(), expected)
      }
    })

    test('a position older than history gets herald.reset first, then what is retained', async (t) => {
      const setup = await factoryOf()({ historySize: 3 })
      t.after(setup.close)
      const { broker } = setup
      const ids: number[] = []
      for (let index = 0; index < 10; index++) ids.push(Number((await broker.publish({ topics: ['g'], data: data(index) })).id))
      await setup.trim('g')
      const subscription = broker.subscribe(['g'], { lastEventId: String(ids[2]) })
      const received = collect(subscription)
      await received.waitFor(3)
      const first = received.messages[0]
      assert.ok(first !== undefined && 'reset' in first, 'reset comes before any event')
      assert.equal(first.reset.reason, 'history-trimmed')
      assert.deepEqual(first.reset.topics, ['g'])
      assert.deepEqual(received.ids(), ids.slice(-3))
    })

    test('events older than the history time limit are not replayed, and their loss is signalled', async (t) => {
      const { broker, close } = await factoryOf()({ historyTtlMs: 300 })
      t.after(close)
      const seen = await broker.publish({ topics: ['ttl'], data: data('seen') })
      await broker.publish({ topics: ['ttl'], data: data('expires') })
      await new Promise((resolve) => setTimeout(resolve, 400))
      const fresh = await broker.publish({ topics: ['ttl'], data: data('fresh') })
      const subscription = broker.subscribe(['ttl'], { lastEventId: seen.id })
      const received = collect(subscription)
      await received.waitFor(1)
      const first = received.messages[0]
      assert.ok(first !== undefined && 'reset' in first)
      assert.equal(first.reset.reason, 'history-expired')
      assert.deepEqual(received.ids(), [Number(fresh.id)])
    })

    test('a malformed or unknown id gets herald.reset and continues live', async (t) => {
      const { broker, close } = await factoryOf()()
      t.after(close)
      await broker.publish({ topics: ['m'], data: data('old') })
      for (const [lastEventId, reason] of [['not-an-id', 'malformed-id'], ['99999999', 'unknown-id']]) {
        const subscription = broker.subscribe(['m'], { lastEventId })
        const received = collect(subscription)
        await subscribed(subscription)
        const live = await broker.publish({ topics: ['m'], data: data('live') })
        await received.waitFor(1)
        const first = received.messages[0]
        assert.ok(first !== undefined && 'reset' in first)
        assert.equal(first.reset.reason, reason)
        assert.deepEqual(received.ids(), [Number(live.id)])
        subscription.destroy()
      }
    })

    test('the same idempotency key twice stores and delivers one event', async (t) => {
      const { broker, close } = await factoryOf()()
      t.after(close)
      const subscription = broker.subscribe(['idem'])
      const received = collect(subscription)
      await subscribed(subscription)
      const first = await broker.publish({ topics: ['idem'], data: data(1), idempotencyKey: 'order-17' })
      const again = await broker.publish({ topics: ['idem'], data: data(1), idempotencyKey: 'order-17' })
      const other = await broker.publish({ topics: ['idem'], data: data(2), idempotencyKey: 'order-18' })
      assert.equal(again.id, first.id)
      assert.equal(again.duplicate, true)
      assert.equal(first.duplicate, false)
      await received.waitFor(2)
      // Time for the duplicate, which should not come, to arrive.
      await new Promise((resolve) => setTimeout(resolve, 50))
      assert.deepEqual(received.ids(), [Number(first.id), Number(other.id)])
    })

    test('a subscriber that stops reading is ended past its byte cap; others are unaffected', async (t) => {
      const { broker, close } = await factoryOf()({ maxQueueBytes: 4096 })
      t.after(close)
      const slow = broker.subscribe(['load'])
      const fast = broker.subscribe(['load'])
      const receivedFast = collect(fast)
      let slowError: unknown
      slow.on('error', (error) => { slowError = error })
      await Promise.all([subscribed(slow), subscribed(fast)])
      for (let index = 0; index < 100; index++) await broker.publish({ topics: ['load'], data: data('x'.repeat(100)) })
      await receivedFast.waitFor(100)
      await until(() => slow.destroyed && slowError !== undefined, 5_000, 'slow subscriber ended')
      assert.ok(slowError instanceof SlowConsumerError)
      assert.equal(broker.listenerCount('load'), 1)
    })
  })
}
