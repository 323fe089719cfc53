import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { SlowConsumerError } from '../src/hub/session.js'
import { encodeStreamId, formatPosition, parseStreamId, topicTag } from '../src/protocol.js'
import { until } from './helper.js'
import { clusterFactory, collect, memoryFactory, redisFactory, subscribed, type HubFactory, type HubUnderTest } from './helpers/brokers.js'
import { epochOf, seq } from './helpers/event-ids.js'
import { RedisCluster } from './helpers/redis-cluster.js'
import { RedisServer } from './helpers/redis-server.js'
import type { Transport } from '../src/transport/transport.js'

/** A transport that passes everything to `inner` but the history read or the listen a test replaces. */
function standIn (inner: Transport, replaced: Partial<Pick<Transport, 'read' | 'listen'>>): Transport {
  return {
    kind: inner.kind,
    bind: (sink) => inner.bind(sink),
    publish: async (input) => await inner.publish(input),
    publishBatch: async (inputs) => await inner.publishBatch(inputs),
    heads: async (topics) => await inner.heads(topics),
    read: replaced.read ?? (async (topic, after, limit, maxBytes) => await inner.read(topic, after, limit, maxBytes)),
    listen: replaced.listen ?? (async (topic) => await inner.listen(topic)),
    unlisten: (topic) => inner.unlisten(topic),
    health: () => inner.health(),
    close: async () => await inner.close()
  }
}

/** A gate a test opens: until then, whatever awaits it waits. */
function gate (): { passed: Promise<void>, open: () => void } {
  let open!: () => void
  const passed = new Promise<void>((resolve) => { open = resolve })
  return { passed, open }
}

/** A transport whose history reads return only when the test says, to hold a catch-up open. */
function gatedReads (): { wrap: (inner: Transport) => Transport, reads: () => number, open: () => void } {
  const { passed, open } = gate()
  let reads = 0
  const wrap = (inner: Transport): Transport => standIn(inner, {
    read: async (topic, after, limit, maxBytes) => {
      reads++
      const read = await inner.read(topic, after, limit, maxBytes)
      await passed
      return read
    }
  })
  return { wrap, reads: () => reads, open }
}

/** A transport whose `listen` resolves only when the test says: the SUBSCRIBE of a new topic is still on its way. */
function gatedListen (): { wrap: (inner: Transport) => Transport, listens: () => number, open: () => void } {
  const { passed, open } = gate()
  let listens = 0
  const wrap = (inner: Transport): Transport => standIn(inner, {
    listen: async (topic) => {
      listens++
      await passed
      await inner.listen(topic)
    }
  })
  return { wrap, listens: () => listens, open }
}

/** A transport that counts history reads and the largest page a topic returned, and can act on a read. */
function countedReads (onRead: (count: number) => void = () => {}): { wrap: (inner: Transport) => Transport, reads: () => number, largestPage: () => number, largestPageBytes: () => number } {
  let reads = 0
  let largestPage = 0
  let largestPageBytes = 0
  const wrap = (inner: Transport): Transport => standIn(inner, {
    read: async (topic, after, limit, maxBytes) => {
      const read = await inner.read(topic, after, limit, maxBytes)
      reads++
      largestPage = Math.max(largestPage, read.events.length)
      let bytes = 0
      for (const event of read.events) bytes += event.data.length
      largestPageBytes = Math.max(largestPageBytes, bytes)
      onRead(reads)
      return read
    }
  })
  return { wrap, reads: () => reads, largestPage: () => largestPage, largestPageBytes: () => largestPageBytes }
}

let redis: RedisServer
// No replicas: nothing here fails a master over (test/cluster.test.ts does).
let cluster: RedisCluster
before(async () => { [redis, cluster] = await Promise.all([RedisServer.start(), RedisCluster.start({ replicas: 0 })]) })
after(async () => { await Promise.all([redis.stop(), cluster.stop()]) })

const kinds: Array<[string, () => HubFactory]> = [
  ['memory', () => memoryFactory()],
  ['redis', () => redisFactory(redis)],
  ['cluster', () => clusterFactory(cluster)]
]

const data = (value: unknown) => JSON.stringify(value)
/** The id a stream of `topics` carries at these positions (`<epoch>-<seq>` each, or '' for none yet). */
const streamId = (topics: string[], ids: string[]) => encodeStreamId(topics.map(topicTag), ids.map((id) => id === '' ? { epoch: '', seq: 0 } : { epoch: epochOf(id), seq: seq(id) }))

for (const [kind, factoryOf] of kinds) {
  describe(`broker contract: ${kind}`, () => {
    test('delivers an event to a subscriber of its topic, framed once as SSE', async (t) => {
      const { hub, close } = await factoryOf()()
      t.after(close)
      const subscription = hub.subscribe(['chat'])
      const received = collect(subscription)
      await subscribed(subscription)
      const published = await hub.publish({ topics: ['chat'], data: data({ text: 'hi' }), type: 'message' })
      await received.waitFor(1)
      const id = published.ids[0] as string
      assert.deepEqual(received.ids(), [seq(id)])
      assert.equal(received.text(), `id: ${id}\nevent: message\ndata: {"text":"hi"}\n\n`)
      subscription.destroy()
    })

    test('each topic numbers its own events: ids grow by one with publish order on the topic', async (t) => {
      const { hub, close } = await factoryOf()()
      t.after(close)
      const subscription = hub.subscribe(['a'])
      const received = collect(subscription)
      await subscribed(subscription)
      const ids: number[] = []
      for (let index = 0; index < 50; index++) {
        ids.push(seq((await hub.publish({ topics: ['a'], data: data(index) })).ids[0] as string))
        await hub.publish({ topics: ['elsewhere'], data: data(index) })
      }
      assert.deepEqual(ids, Array.from({ length: 50 }, (_, index) => index + 1))
      await received.waitFor(50)
      assert.deepEqual(received.ids(), ids)
    })

    test('one connection, several topics: each event once, none from other topics; the id carries every topic', async (t) => {
      const { hub, close } = await factoryOf()()
      t.after(close)
      const both = hub.subscribe(['a', 'b'])
      const onlyB = hub.subscribe(['b'])
      const onlyC = hub.subscribe(['c'])
      const receivedBoth = collect(both)
      const receivedB = collect(onlyB)
      const receivedC = collect(onlyC)
      await Promise.all([subscribed(both), subscribed(onlyB), subscribed(onlyC)])
      const first = await hub.publish({ topics: ['a'], data: data(1) })
      const second = await hub.publish({ topics: ['a', 'b'], data: data(2) })
      const third = await hub.publish({ topics: ['b'], data: data(3) })
      const fourth = await hub.publish({ topics: ['c'], data: data(4) })
      assert.equal(second.ids.length, 2, 'an event on two topics takes a position on each')
      assert.deepEqual([first, second, third, fourth].map((published) => published.ids.map(seq)), [[1], [2, 1], [2], [1]])
      await receivedBoth.waitFor(3)
      await receivedB.waitFor(2)
      await receivedC.waitFor(1)
      // Time for a duplicate or a stray event, which should not come, to arrive.
      await new Promise((resolve) => setTimeout(resolve, 50))
      const [a1, a2, b2] = [first.ids[0], second.ids[0], third.ids[0]] as string[]
      if (kind === 'cluster') {
        // a and b live on two shards, whose connections deliver each in its own time: order holds on each topic (the
        // order across topics is the order of arrival), and each event's id carries its own topic's position.
        const got = receivedBoth.payloads() as number[]
        assert.deepEqual([...got].sort(), [1, 2, 3], `each event once: ${JSON.stringify(got)}`)
        assert.deepEqual(got.filter((label) => label !== 3), [1, 2], 'in order on a')
        assert.deepEqual(got.filter((label) => label !== 1), [2, 3], 'in order on b')
        const shownAt = receivedBoth.events.map((event) => {
          const request = parseStreamId(event.id, ['a', 'b'])
          assert.equal(request.kind, 'positions')
          const positions = request.kind === 'positions' ? request.positions : new Map()
          // The event on a and b is shown for a, its first topic.
          const topic = JSON.parse(event.data) === 3 ? 'b' : 'a'
          return [JSON.parse(event.data), topic, formatPosition(positions.get(topic) ?? { epoch: '', seq: 0 })]
        })
        assert.deepEqual(shownAt.sort(), [[1, 'a', a1], [2, 'a', a2], [3, 'b', b2]])
        assert.equal(receivedBoth.lastEventId(), streamId(['a', 'b'], [a2 as string, b2 as string]))
      } else {
        assert.deepEqual(receivedBoth.payloads(), [1, 2, 3])
        assert.deepEqual(receivedBoth.events.map((event) => event.id), [
          streamId(['a', 'b'], [a1 as string, '']),
          // b's copy of the event on a and b comes after it: b's position moves when it does, silently.
          streamId(['a', 'b'], [a2 as string, '']),
          streamId(['a', 'b'], [a2 as string, b2 as string])
        ])
      }
      // The event on a and b reaches b's single-topic streams under b's position.
      assert.deepEqual(receivedB.payloads(), [2, 3])
      assert.deepEqual(receivedB.events.map((event) => event.id), [second.ids[1], b2])
      assert.deepEqual(receivedC.payloads(), [4])
    })

    test('releases every listener and upstream subscription when the last subscriber leaves', async (t) => {
      const setup = await factoryOf()()
      t.after(setup.close)
      const { hub } = setup
      const one = hub.subscribe(['x', 'y'])
      const two = hub.subscribe(['x'])
      await Promise.all([subscribed(one), subscribed(two)])
      assert.equal(hub.listenerCount('x'), 2)
      assert.equal(await setup.upstreamSubscribers('x'), kind === 'memory' ? 2 : 1, 'one upstream subscription per topic')
      one.destroy()
      assert.equal(hub.listenerCount('x'), 1)
      assert.equal(hub.listenerCount('y'), 0)
      two.destroy()
      assert.equal(hub.listenerCount('x'), 0)
      assert.equal(hub.streamCount, 0)
      await until(async () => await setup.upstreamSubscribers('x') === 0 && await setup.upstreamSubscribers('y') === 0, 5_000, 'unsubscribe')
    })

    test('resumes after Last-Event-ID with exactly the missed events of every topic, in order on each, each once', async (t) => {
      const { hub, close } = await factoryOf()()
      t.after(close)
      const live = hub.subscribe(['a', 'b'])
      const seen = collect(live)
      await subscribed(live)
      await hub.publish({ topics: ['a'], data: data('seen a') })
      await hub.publish({ topics: ['b'], data: data('seen b') })
      await seen.waitFor(2)
      const lastEventId = seen.events.at(-1)?.id as string
      live.destroy()
      const missed: string[] = []
      for (let index = 0; index < 10; index++) {
        await hub.publish({ topics: [index % 2 === 0 ? 'a' : 'b'], data: data(`missed ${index}`) })
        missed.push(`missed ${index}`)
        await hub.publish({ topics: ['other'], data: data(index) })
      }
      await hub.publish({ topics: ['a', 'b'], data: data('both') })
      missed.push('both')
      const subscription = hub.subscribe(['a', 'b'], lastEventId)
      const received = collect(subscription)
      await received.waitFor(missed.length)
      await hub.publish({ topics: ['b'], data: data('live') })
      await received.waitFor(missed.length + 1)
      const got = received.payloads() as string[]
      assert.deepEqual([...got].sort(), [...missed, 'live'].sort(), 'every missed event, each once')
      const onA = got.filter((label) => ['missed 0', 'missed 2', 'missed 4', 'missed 6', 'missed 8', 'both'].includes(label))
      assert.deepEqual(onA, ['missed 0', 'missed 2', 'missed 4', 'missed 6', 'missed 8', 'both'], 'in order on a')
      assert.equal(got.at(-1), 'live')
      assert.equal(received.resets().length, 0, 'no reset when history covers the gap')
    })

    test('a client that reconnects with another topic set resumes the topics it had and starts the new ones at the head', async (t) => {
      const { hub, close } = await factoryOf()()
      t.after(close)
      const first = hub.subscribe(['a', 'b'])
      const seen = collect(first)
      await subscribed(first)
      await hub.publish({ topics: ['a'], data: data('a1') })
      await hub.publish({ topics: ['c'], data: data('c1, before the client asked for c') })
      await seen.waitFor(1)
      first.destroy()
      await hub.publish({ topics: ['a'], data: data('a2') })
      await hub.publish({ topics: ['b'], data: data('b1') })
      const second = hub.subscribe(['c', 'a'], seen.events.at(-1)?.id)
      const received = collect(second)
      await received.waitFor(1)
      await subscribed(second)
      await hub.publish({ topics: ['c'], data: data('c2') })
      await received.waitFor(2)
      assert.deepEqual(received.payloads(), ['a2', 'c2'])
      assert.equal(received.resets().length, 0)
    })

    test('hand-over from history to live has no gap and no duplicate under concurrent publishing', async (t) => {
      const { hub, close } = await factoryOf()()
      t.after(close)
      const published: string[] = []
      const state = { publishing: true }
      const publisher = (async () => {
        while (state.publishing) {
          published.push((await hub.publish({ topics: ['race'], data: data(published.length) })).ids[0] as string)
          // The memory broker answers without I/O: let timers and the subscribers run.
          await new Promise((resolve) => setImmediate(resolve))
        }
      })()
      const clients = []
      for (let index = 0; index < 10; index++) {
        await new Promise((resolve) => setTimeout(resolve, 5))
        const start = published.at(-1) ?? '0'
        const subscription = hub.subscribe(['race'], start)
        clients.push({ start, received: collect(subscription) })
      }
      await new Promise((resolve) => setTimeout(resolve, 100))
      state.publishing = false
      await publisher
      for (const { start, received } of clients) {
        const expected = published.filter((id) => start === '0' || seq(id) > seq(start)).map(seq)
        await received.waitFor(expected.length)
        assert.deepEqual(received.ids(), expected)
      }
    })

    test('a new stream gets what is published after it opened, also before its SUBSCRIBE took effect', async (t) => {
      const gated = gatedListen()
      const { hub, close } = await factoryOf()({}, gated.wrap)
      t.after(async () => { gated.open(); await close() })
      await hub.publish({ topics: ['early'], data: data('before the stream') })
      const subscription = hub.subscribe(['early'])
      const received = collect(subscription)
      await until(() => gated.listens() === 1, 5_000, 'the SUBSCRIBE to be asked for')
      // Published while the stream is open but not yet subscribed upstream: neither live nor older than the stream.
      const meanwhile = await hub.publish({ topics: ['early'], data: data('meanwhile') })
      gated.open()
      await subscribed(subscription)
      const after = await hub.publish({ topics: ['early'], data: data('after') })
      await received.waitFor(2)
      assert.deepEqual(received.ids(), [meanwhile.ids[0], after.ids[0]].map((id) => seq(id as string)))
      assert.equal(received.resets().length, 0)
    })

    test('live events published during a slow history read are held, then follow the replay: no gap, no duplicate', async (t) => {
      const gated = gatedReads()
      const { hub, close } = await factoryOf()({}, gated.wrap)
      t.after(close)
      const seen = await hub.publish({ topics: ['hold'], data: data('seen') })
      const missed = [seq((await hub.publish({ topics: ['hold'], data: data('missed') })).ids[0] as string)]
      const subscription = hub.subscribe(['hold'], seen.ids[0])
      const received = collect(subscription)
      await until(() => gated.reads() === 1, 5_000, 'the history read')
      const live: number[] = []
      for (let index = 0; index < 5; index++) live.push(seq((await hub.publish({ topics: ['hold'], data: data(index) })).ids[0] as string))
      // Delivered live to the hub while the read is open: every one of them must wait in the subscription.
      assert.equal(subscription.holding, true)
      assert.deepEqual(received.ids(), [])
      gated.open()
      await received.waitFor(missed.length + live.length)
      assert.deepEqual(received.ids(), [...missed, ...live])
      assert.equal(received.resets().length, 0)
    })

    test('a long replay on several topics is read in pages and arrives whole, in order on each topic, each event once', async (t) => {
      const counted = countedReads()
      const { hub, close } = await factoryOf()({ historySize: 1000 }, counted.wrap)
      t.after(close)
      const byTopic = new Map<string, number[]>([['p0', []], ['p1', []], ['p2', []]])
      for (let index = 0; index < 600; index++) {
        const topics = index % 5 === 0 ? ['p1', 'p2'] : [`p${index % 3}`]
        await hub.publish({ topics, data: data(index) })
        byTopic.get(topics[0] as string)?.push(index)
      }
      const subscription = hub.subscribe(['p0', 'p1', 'p2'], '0')
      const received = collect(subscription)
      await received.waitFor(600)
      const got = received.payloads() as number[]
      assert.equal(got.length, 600)
      assert.equal(new Set(got).size, 600, 'each event once')
      for (const [topic, expected] of byTopic) assert.deepEqual(got.filter((index) => expected.includes(index)), expected, `in order on ${topic}`)
      assert.equal(received.resets().length, 0)
      t.diagnostic(`${counted.reads()} history reads, at most ${counted.largestPage()} events of a topic in one`)
      assert.ok(counted.reads() >= 600 / 100, `${counted.reads()} reads`)
      assert.ok(counted.largestPage() <= 100, 'never the whole history in one read')
    })

    test('a replay of big events holds a bounded page, not a hundred of them: pages are cut by bytes too', async (t) => {
      const counted = countedReads()
      const { hub, close } = await factoryOf()({ historySize: 1000 }, counted.wrap)
      t.after(close)
      const big = (index: number): string => JSON.stringify({ index, pad: 'x'.repeat(40_000) })
      for (let index = 0; index < 120; index++) await hub.publish({ topics: [`big${index % 2}`], data: big(index) })
      const subscription = hub.subscribe(['big0', 'big1'], '0')
      const received = collect(subscription)
      await received.waitFor(120)
      const got = (received.payloads() as Array<{ index: number }>).map((event) => event.index)
      assert.deepEqual(got.filter((index) => index % 2 === 0), Array.from({ length: 60 }, (_, index) => index * 2))
      assert.deepEqual(got.filter((index) => index % 2 === 1), Array.from({ length: 60 }, (_, index) => index * 2 + 1))
      assert.equal(received.resets().length, 0)
      t.diagnostic(`${counted.reads()} history reads of 40 KB events, the largest ${counted.largestPageBytes()} bytes`)
      // The 1 MiB queue cap over two topics (each topic's page at least one event), where 50 events a topic
      // made 4 MB.
      assert.ok(counted.largestPageBytes() <= 512 * 1024 + 40_100, `a page held ${counted.largestPageBytes()} bytes`)
    })

    test('a client that leaves mid-replay stops the history reads', async (t) => {
      const client: { subscription?: ReturnType<HubUnderTest['hub']['subscribe']> } = {}
      const counted = countedReads((count) => { if (count === 3) client.subscription?.destroy() })
      const { hub, close } = await factoryOf()({ historySize: 1000 }, counted.wrap)
      t.after(close)
      for (let index = 0; index < 1000; index++) await hub.publish({ topics: ['long'], data: data(index) })
      const subscription = hub.subscribe(['long'], '0')
      client.subscription = subscription
      collect(subscription)
      await until(() => subscription.destroyed, 5_000, 'the client to leave')
      // Time for a further read, which should not come, to start.
      await new Promise((resolve) => setTimeout(resolve, 100))
      assert.equal(counted.reads(), 3)
      assert.equal(hub.streamCount, 0)
    })

    test('live events held during a stalled catch-up count against the byte cap', async (t) => {
      const gated = gatedReads()
      const { hub, close } = await factoryOf()({ maxQueueBytes: 4096 }, gated.wrap)
      t.after(async () => { gated.open(); await close() })
      const seen = await hub.publish({ topics: ['stall'], data: data('seen') })
      const subscription = hub.subscribe(['stall'], seen.ids[0])
      collect(subscription)
      let error: unknown
      subscription.on('error', (cause) => { error = cause })
      await until(() => gated.reads() === 1, 5_000, 'the history read')
      for (let index = 0; index < 100 && !subscription.destroyed; index++) await hub.publish({ topics: ['stall'], data: data('x'.repeat(100)) })
      await until(() => error !== undefined, 5_000, 'the held bytes to pass the cap')
      assert.ok(error instanceof SlowConsumerError, String(error))
      assert.ok(error.queuedBytes <= 4096 + 200, `held ${error.queuedBytes} bytes`)
      assert.equal(hub.listenerCount('stall'), 0)
    })

    test('a position older than history gets herald.reset first, then what is retained', async (t) => {
      const setup = await factoryOf()({ historySize: 3 })
      t.after(setup.close)
      const { hub } = setup
      const ids: string[] = []
      for (let index = 0; index < 10; index++) ids.push((await hub.publish({ topics: ['g'], data: data(index) })).ids[0] as string)
      await setup.trim('g')
      const subscription = hub.subscribe(['g'], ids[2])
      const received = collect(subscription)
      await received.waitFor(3)
      assert.equal(received.events[0]?.event, 'herald.reset', 'reset comes before any event')
      assert.deepEqual(received.resets().map((reset) => [reset.reason, reset.topics]), [['history-trimmed', ['g']]])
      assert.deepEqual(received.ids(), ids.slice(-3).map(seq))
    })

    test('on a multi-topic stream, a trimmed topic is named alone and the other topics resume whole', async (t) => {
      const setup = await factoryOf()({ historySize: 3 })
      t.after(setup.close)
      const { hub } = setup
      const live = hub.subscribe(['busy', 'calm'])
      const seen = collect(live)
      await subscribed(live)
      await hub.publish({ topics: ['busy'], data: data('busy 0') })
      await hub.publish({ topics: ['calm'], data: data('calm 0') })
      await seen.waitFor(2)
      live.destroy()
      for (let index = 1; index <= 10; index++) await hub.publish({ topics: ['busy'], data: data(`busy ${index}`) })
      await hub.publish({ topics: ['calm'], data: data('calm 1') })
      await setup.trim('busy')
      const subscription = hub.subscribe(['busy', 'calm'], seen.events.at(-1)?.id)
      const received = collect(subscription)
      await received.waitFor(4)
      assert.equal(received.events[0]?.event, 'herald.reset')
      assert.deepEqual(received.resets().map((reset) => [reset.reason, reset.topics]), [['history-trimmed', ['busy']]])
      assert.deepEqual(received.payloads(), ['busy 8', 'busy 9', 'busy 10', 'calm 1'])
    })

    test('events older than the history time limit are not replayed, and their loss is signalled', async (t) => {
      const { hub, close } = await factoryOf()({ historyTtlMs: 300 })
      t.after(close)
      const seen = await hub.publish({ topics: ['ttl'], data: data('seen') })
      await hub.publish({ topics: ['ttl'], data: data('expires') })
      await new Promise((resolve) => setTimeout(resolve, 400))
      const fresh = await hub.publish({ topics: ['ttl'], data: data('fresh') })
      const subscription = hub.subscribe(['ttl'], seen.ids[0])
      const received = collect(subscription)
      await received.waitFor(1)
      assert.equal(received.events[0]?.event, 'herald.reset')
      assert.deepEqual(received.resets().map((reset) => reset.reason), ['history-expired'])
      assert.deepEqual(received.ids(), [seq(fresh.ids[0] as string)])
    })

    test('a topic is forgotten a retention after its last event, and a resume from before gets herald.reset, not a gap', async (t) => {
      const setup = await factoryOf()({ historyRetentionMs: 200 })
      t.after(setup.close)
      const { hub } = setup
      const seen = await hub.publish({ topics: ['gone'], data: data('seen') })
      await hub.publish({ topics: ['gone'], data: data('missed') })
      assert.equal(await setup.historyExists('gone'), true)
      // The memory broker forgets lazily, on a publish or a read.
      for (let index = 0; index < 6; index++) {
        await new Promise((resolve) => setTimeout(resolve, 50))
        await hub.publish({ topics: ['other'], data: data(index) })
      }
      assert.equal(await setup.historyExists('gone'), false, 'the history expired')
      const subscription = hub.subscribe(['gone'], seen.ids[0])
      const received = collect(subscription)
      await subscribed(subscription)
      const live = await hub.publish({ topics: ['gone'], data: data('live') })
      await received.waitFor(1)
      assert.equal(received.events[0]?.event, 'herald.reset')
      assert.deepEqual(received.resets().map((reset) => [reset.reason, reset.topics]), [['epoch-changed', ['gone']]])
      assert.deepEqual(received.payloads(), ['live'])
      assert.equal(received.events.at(-1)?.id, live.ids[0])
    })

    test('a malformed, unknown or other-epoch id gets herald.reset and continues live', async (t) => {
      const { hub, close } = await factoryOf()()
      t.after(close)
      const old = await hub.publish({ topics: ['m'], data: data('old') })
      const cases = [
        ['not-an-id', 'malformed-id'],
        [`${epochOf(old.ids[0] as string)}-99999999`, 'unknown-id'],
        ['zzzzzzzzzz-1', 'epoch-changed'],
        ['17', 'epoch-changed'] // a plain number: an id of Herald 0.1, before epochs
      ]
      for (const [lastEventId, reason] of cases) {
        const subscription = hub.subscribe(['m'], lastEventId)
        const received = collect(subscription)
        await subscribed(subscription)
        const live = await hub.publish({ topics: ['m'], data: data('live') })
        await received.waitFor(1)
        assert.equal(received.events[0]?.event, 'herald.reset')
        assert.deepEqual(received.resets().map((reset) => reset.reason), [reason])
        assert.deepEqual(received.ids(), [seq(live.ids[0] as string)])
        subscription.destroy()
      }
    })

    test('ids carry the topic\'s epoch and its own sequence number', async (t) => {
      const { hub, close } = await factoryOf()()
      t.after(close)
      const ids: string[] = []
      for (let index = 0; index < 12; index++) ids.push((await hub.publish({ topics: [`s${index % 3}`], data: data(index) })).ids[0] as string)
      for (const id of ids) assert.match(id, /^[0-9a-z]{1,16}-\d+$/)
      for (let topic = 0; topic < 3; topic++) {
        const own = ids.filter((_, index) => index % 3 === topic)
        assert.equal(new Set(own.map(epochOf)).size, 1, 'one epoch per topic')
        assert.deepEqual(own.map(seq), [1, 2, 3, 4])
      }
    })

    if (kind !== 'memory') {
      test('a live stream that meets an event of a new epoch gets herald.reset, then every event of the new epoch', async (t) => {
        const setup = await factoryOf()()
        t.after(setup.close)
        const { hub } = setup
        const subscription = hub.subscribe(['n'])
        const received = collect(subscription)
        await subscribed(subscription)
        for (let index = 0; index < 5; index++) await hub.publish({ topics: ['n'], data: data(index) })
        await received.waitFor(5)
        // The topic is forgotten (its keys expired or were evicted): the next publish makes a new epoch, at 1.
        await setup.forgetAll?.()
        const fresh: string[] = []
        for (let index = 0; index < 3; index++) fresh.push((await hub.publish({ topics: ['n'], data: data(index) })).ids[0] as string)
        assert.deepEqual(fresh.map(seq), [1, 2, 3])
        await received.waitFor(8)
        assert.deepEqual(received.events.map((event) => event.event === 'herald.reset' ? JSON.parse(event.data).reason : seq(event.id)), [1, 2, 3, 4, 5, 'epoch-changed', 1, 2, 3])
        assert.deepEqual(received.events.slice(-3).map((event) => event.id), fresh)
      })
    }

    test('the same idempotency key twice stores and delivers one event, per topic', async (t) => {
      const { hub, close } = await factoryOf()()
      t.after(close)
      const subscription = hub.subscribe(['idem'])
      const received = collect(subscription)
      await subscribed(subscription)
      const first = await hub.publish({ topics: ['idem'], data: data(1), idempotencyKey: 'order-17' })
      const again = await hub.publish({ topics: ['idem'], data: data(1), idempotencyKey: 'order-17' })
      const other = await hub.publish({ topics: ['idem'], data: data(2), idempotencyKey: 'order-18' })
      const wider = await hub.publish({ topics: ['idem', 'idem2'], data: data(1), idempotencyKey: 'order-17' })
      assert.deepEqual(again.ids, first.ids)
      assert.equal(again.duplicate, true)
      assert.equal(first.duplicate, false)
      assert.equal(wider.ids[0], first.ids[0], 'the key is remembered per topic')
      assert.equal(wider.duplicate, false, 'stored on the topic that had not seen it')
      await received.waitFor(2)
      // Time for the duplicate, which should not come, to arrive.
      await new Promise((resolve) => setTimeout(resolve, 50))
      assert.deepEqual(received.ids(), [seq(first.ids[0] as string), seq(other.ids[0] as string)])
    })

    test('a subscriber that stops reading is ended past its byte cap; others are unaffected', async (t) => {
      const { hub, close } = await factoryOf()({ maxQueueBytes: 4096 })
      t.after(close)
      const slow = hub.subscribe(['load'])
      const fast = hub.subscribe(['load'])
      const receivedFast = collect(fast)
      let slowError: unknown
      slow.on('error', (error) => { slowError = error })
      await Promise.all([subscribed(slow), subscribed(fast)])
      for (let index = 0; index < 100; index++) await hub.publish({ topics: ['load'], data: data('x'.repeat(100)) })
      await receivedFast.waitFor(100)
      await until(() => slow.destroyed && slowError !== undefined, 5_000, 'slow subscriber ended')
      assert.ok(slowError instanceof SlowConsumerError)
      assert.equal(hub.listenerCount('load'), 1)
    })
  })
}
