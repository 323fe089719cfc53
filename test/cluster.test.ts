import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { keySlot } from '../src/redis-topology.js'
import { build, publish, until, type Herald } from './helper.js'
import { RedisCluster, type ClusterMaster } from './helpers/redis-cluster.js'
import { openStream, type StreamClient } from './helpers/sse-client.js'

// A real cluster (3 masters + 3 replicas) for the file, and three Herald instances on it.
let cluster: RedisCluster
let instances: Herald[] = []
let topics: string[] = []
before(async () => {
  cluster = await RedisCluster.start()
  topics = topicsOnEveryShard(await cluster.masters(), 2)
})
after(async () => await cluster.stop())

/** `perShard` topic names whose keys (`herald:{<topic>}:…`) each master owns, in shard order. */
function topicsOnEveryShard (masters: ClusterMaster[], perShard: number): string[] {
  const chosen: string[] = []
  for (const master of masters) {
    let found = 0
    for (let index = 0; found < perShard && index < 100_000; index++) {
      const topic = `room-${index}`
      const slot = keySlot(`herald:{${topic}}`)
      if (master.slots.some(([first, last]) => slot >= first && slot <= last) && !chosen.includes(topic)) {
        chosen.push(topic)
        found++
      }
    }
  }
  return chosen
}

interface Sent { topic: string, n: number }

/** What a stream received, per topic, as the `n` of each event's data, in arrival order. */
function receivedPerTopic (stream: StreamClient): Map<string, number[]> {
  const perTopic = new Map<string, number[]>()
  for (const event of stream.events) {
    if (event.event !== undefined && event.event.startsWith('herald.')) continue
    const { topic, n } = JSON.parse(event.data) as Sent
    perTopic.set(topic, [...(perTopic.get(topic) ?? []), n])
  }
  return perTopic
}

/** Publishes `count` events to each topic, each topic's in order, spread over the instances; returns per topic the `n`s. */
async function publishToAll (from: number, count: number): Promise<void> {
  await Promise.all(topics.map(async (topic, topicIndex) => {
    for (let n = from; n < from + count; n++) {
      const instance = instances[(n + topicIndex) % instances.length]
      const reply = await publish(instance?.url ?? '', { topic, data: { topic, n } })
      assert.equal(reply.status, 202, `publish ${n} to ${topic}: ${JSON.stringify(reply.body)}`)
    }
  }))
}

const range = (from: number, count: number) => Array.from({ length: count }, (_, index) => from + index)

test('three instances on a 3-master cluster, topics on every shard: every stream gets every event once, in per-topic order; a multi-topic stream resumes on another instance', async (t) => {
  instances = await Promise.all([0, 1, 2].map(async () => await build(t, { REDIS_URL: cluster.url })))
  assert.ok(instances.every(({ app }) => app.redisTopology.mode === 'cluster'))
  assert.equal(new Set(topics.map((topic) => keySlot(`herald:{${topic}}`))).size, topics.length)

  const query = topics.map((topic) => `topic=${encodeURIComponent(topic)}`).join('&')
  const single = await Promise.all(instances.flatMap(({ url }) => topics.map(async (topic) => ({ topic, stream: await openStream(`${url}/v1/stream?topic=${topic}`) }))))
  const multi = await Promise.all(instances.map(async ({ url }) => await openStream(`${url}/v1/stream?${query}`)))
  t.after(() => { for (const { stream } of single) stream.close(); for (const stream of multi) stream.close() })
  // Each instance SSUBSCRIBEs on the shard that owns a topic; wait until every shard counts the three instances.
  for (const topic of topics) {
    await until(async () => {
      const owner = await cluster.masterOfSlot(keySlot(`herald:{${topic}}`))
      const counts = await cluster.command(owner.port, 'PUBSUB', 'SHARDNUMSUB', `herald:{${topic}}`) as [string, number]
      return counts[1] === instances.length
    }, 10_000, `three sharded subscribers of ${topic}`)
  }

  const count = 20
  await publishToAll(0, count)
  for (const { topic, stream } of single) {
    await until(() => (receivedPerTopic(stream).get(topic)?.length ?? 0) >= count, 15_000, `${count} events of ${topic}`)
    assert.deepEqual(receivedPerTopic(stream).get(topic), range(0, count), `${topic}: once each, in order`)
  }
  for (const stream of multi) {
    await until(() => topics.every((topic) => (receivedPerTopic(stream).get(topic)?.length ?? 0) >= count), 15_000, 'every topic on the multi-topic stream')
    const perTopic = receivedPerTopic(stream)
    for (const topic of topics) assert.deepEqual(perTopic.get(topic), range(0, count), `multi-topic stream, ${topic}: once each, in order`)
    assert.equal(stream.events.length, topics.length * count, 'nothing else')
  }

  // Resume: the first instance's multi-topic stream goes away; more events come; its id resumes on the third instance.
  const [left] = multi
  assert.ok(left !== undefined)
  const lastId = left.events.at(-1)?.id
  assert.ok(lastId !== undefined)
  left.close()
  await publishToAll(count, count)
  const resumed = await openStream(`${instances[2]?.url ?? ''}/v1/stream?${query}`, { 'last-event-id': lastId })
  t.after(() => resumed.close())
  await until(() => topics.every((topic) => (receivedPerTopic(resumed).get(topic)?.length ?? 0) >= count), 15_000, 'the resumed stream catches up on every topic')
  assert.ok(!resumed.events.some((event) => event.event === 'herald.reset'), 'no reset: every topic resumes exactly')
  const perTopic = receivedPerTopic(resumed)
  for (const topic of topics) assert.deepEqual(perTopic.get(topic), range(count, count), `resumed on another instance, ${topic}: exactly what it missed, in order`)
  console.log(`# ${instances.length} instances, ${topics.length} topics over 3 shards: ${single.length} single-topic and ${multi.length} multi-topic streams got every event once, in order; a resume id of ${lastId.length} characters`)
})
