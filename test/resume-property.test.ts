import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import fc from 'fast-check'
import { keySlot } from '../src/redis-topology.js'
import { clusterFactory, collect, memoryFactory, redisFactory, subscribed, type HubFactory, type HubUnderTest } from './helpers/brokers.js'
import { RedisCluster } from './helpers/redis-cluster.js'
import { RedisServer } from './helpers/redis-server.js'

// On a cluster a topic's keys and channel live on the shard of its hash tag, `{<topic>}`: these four are on all three
// shards of the cluster redis-cli creates (the test checks), so a stream's topics span shards.
const POOL = ['a', 'b', 'c', 'd']

let redis: RedisServer
// No replicas: nothing here fails a master over.
let cluster: RedisCluster
before(async () => { [redis, cluster] = await Promise.all([RedisServer.start(), RedisCluster.start({ replicas: 0 })]) })
after(async () => { await Promise.all([redis.stop(), cluster.stop()]) })

/** One generated case: what is published before and while away, which topics the two streams ask for. */
const scenario = fc.record({
  first: fc.subarray(POOL, { minLength: 1 }),
  // Events on one topic each: an event on several of a stream's topics is shown once, at its place on the first of
  // them, which on a replay may come before another of its topics' earlier events (see docs/api.md).
  seen: fc.array(fc.constantFrom(...POOL).map((topic) => [topic]), { minLength: 1, maxLength: 8 }),
  missed: fc.array(fc.constantFrom(...POOL).map((topic) => [topic]), { maxLength: 12 }),
  otherInstance: fc.boolean()
})

for (const kind of ['memory', 'redis', 'cluster'] as const) {
  test(`${kind}: property: a multi-topic stream that reconnects with its last id, on any instance, gets exactly the events it missed, in order on each topic, and nothing twice`, { timeout: 120_000 }, async () => {
    if (kind === 'cluster') {
      const masters = await cluster.masters()
      const shards = new Set(POOL.map((topic) => masters.findIndex((master) => master.slots.some(([first, last]) => keySlot(`{${topic}}`) >= first && keySlot(`{${topic}}`) <= last))))
      assert.equal(shards.size, masters.length, `the topics ${JSON.stringify(POOL)} span every shard`)
    }
    const factory: HubFactory = kind === 'cluster' ? clusterFactory(cluster) : redisFactory(redis)
    let round = 0
    await fc.assert(fc.asyncProperty(scenario, async ({ first, seen, missed, otherInstance }) => {
      round++
      // EventSource reconnects to the same URL: the same topics.
      const second = first
      const prefix = `prop${process.pid}-${round}:`
      // A second instance, on the same deployment, only for a case that reconnects to it.
      const setups: HubUnderTest[] = kind === 'memory'
        ? [await memoryFactory()()]
        : [await factory({ prefix }), ...(otherInstance ? [await factory({ prefix })] : [])]
      try {
        const [one] = setups as [HubUnderTest]
        const two = otherInstance ? setups.at(-1) as HubUnderTest : one
        let label = 0
        const stream = one.hub.subscribe(first)
        const before = collect(stream)
        await subscribed(stream)
        const seenLabels: number[] = []
        for (const topics of seen) {
          await one.hub.publish({ topics, data: JSON.stringify(++label) })
          if (topics.some((topic) => first.includes(topic))) seenLabels.push(label)
        }
        await before.waitFor(seenLabels.length)
        await new Promise((resolve) => setTimeout(resolve, 20))
        // What a browser reconnects with: none when it saw no event (it then starts at the head, as a new client).
        const lastEventId = before.lastEventId() === '' ? undefined : before.lastEventId()
        stream.destroy()
        // label -> topics, for what is published while the client is away.
        const away = new Map<number, string[]>()
        for (const topics of missed) {
          await one.hub.publish({ topics, data: JSON.stringify(++label) })
          away.set(label, topics)
        }
        const again = two.hub.subscribe(second, lastEventId)
        const after = collect(again)
        await subscribed(again)
        const live = ++label
        await one.hub.publish({ topics: second, data: JSON.stringify(live) })
        // Missed events on topics the client had and still asks for come back; topics new to it start at the head.
        const expected = lastEventId === undefined ? [] : [...away].filter(([, topics]) => topics.some((topic) => first.includes(topic) && second.includes(topic))).map(([labelled]) => labelled)
        await after.waitFor(expected.length + 1)
        await new Promise((resolve) => setTimeout(resolve, 20))
        const got = after.payloads() as number[]
        assert.equal(after.resets().length, 0, 'history covers the gap: no reset')
        assert.equal(new Set(got).size, got.length, `nothing twice: ${JSON.stringify(got)}`)
        assert.deepEqual(got.filter((labelled) => labelled !== live).sort((x, y) => x - y), expected, `missed on ${JSON.stringify(first)} -> ${JSON.stringify(second)}`)
        assert.equal(got.at(-1), live)
        for (const topic of second) {
          const onTopic = got.filter((labelled) => labelled === live || away.get(labelled)?.includes(topic))
          assert.deepEqual(onTopic, [...onTopic].sort((x, y) => x - y), `in order on ${topic}`)
        }
        again.destroy()
      } finally {
        for (const setup of setups) await setup.close()
      }
    }), { numRuns: kind === 'memory' ? 60 : 25 })
  })
}
