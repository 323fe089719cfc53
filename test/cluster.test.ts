import assert from 'node:assert/strict'
import { request } from 'node:http'
import { after, before, test } from 'node:test'
import { keySlot } from '../src/redis-topology.js'
import { SseParser } from '../src/sse/parser.js'
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

/**
 * A multi-topic stream that reconnects like EventSource, with Last-Event-ID, to the next instance each time (as a
 * balancer would send it elsewhere). Records every event's data and every reset with its topics, in arrival order.
 */
class FailoverClient {
  readonly received: Array<{ topic: string, n: number } | { reset: string[], reason: string }> = []
  private lastEventId: string | undefined
  private current: ReturnType<typeof request> | undefined
  private stopped = false
  private next = 0

  constructor (private readonly urls: string[], private readonly path: string) {}

  start (): void {
    if (this.stopped) return
    const headers: Record<string, string> = { accept: 'text/event-stream' }
    if (this.lastEventId !== undefined) headers['last-event-id'] = this.lastEventId
    const parser = new SseParser((event) => {
      if (event.event === 'herald.reset') {
        const notice = JSON.parse(event.data) as { reason: string, topics: string[] }
        this.received.push({ reset: notice.topics, reason: notice.reason })
      } else if (event.event === undefined || !event.event.startsWith('herald.')) {
        this.received.push(JSON.parse(event.data) as Sent)
      }
      if (event.id !== undefined && event.id !== '') this.lastEventId = event.id
    })
    let retried = false
    const retry = (): void => {
      if (retried) return
      retried = true
      setTimeout(() => this.start(), 50)
    }
    const url = this.urls[this.next++ % this.urls.length] ?? ''
    const req = request(`${url}${this.path}`, { headers }, (response) => {
      if (response.statusCode !== 200) {
        response.resume()
        response.on('end', retry)
        return
      }
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => parser.push(chunk))
      for (const name of ['end', 'close', 'error']) response.on(name, retry)
    })
    req.on('error', retry)
    req.end()
    this.current = req
  }

  /** Ends the current connection: the client reconnects to the next instance. */
  reconnect (): void {
    this.current?.destroy()
  }

  stop (): void {
    this.stopped = true
    this.current?.destroy()
  }

  /**
   * Per topic: accepted events never received with no reset of the topic after them (silent loss), and events
   * received twice.
   */
  verdict (accepted: Map<string, Set<number>>): { silentlyLost: number, duplicated: number, resets: number } {
    let silentlyLost = 0
    let duplicated = 0
    let resets = 0
    for (const [topic, ns] of accepted) {
      const seen = new Set<number>()
      // The events a reset covers: those published before it that had not arrived.
      let coveredBelow = -1
      for (const entry of this.received) {
        if ('reset' in entry) {
          if (entry.reset.includes(topic)) {
            resets++
            coveredBelow = Number.POSITIVE_INFINITY
          }
          continue
        }
        if (entry.topic !== topic) continue
        if (seen.has(entry.n)) duplicated++
        seen.add(entry.n)
        if (coveredBelow === Number.POSITIVE_INFINITY) coveredBelow = entry.n
      }
      for (const n of ns) if (!seen.has(n) && !(n < coveredBelow)) silentlyLost++
    }
    return { silentlyLost, duplicated, resets }
  }

  /** True once it has the last accepted event of every topic. */
  caughtUp (accepted: Map<string, Set<number>>): boolean {
    return [...accepted].every(([topic, ns]) => ns.size === 0 || this.received.some((entry) => !('reset' in entry) && entry.topic === topic && entry.n === Math.max(...ns)))
  }
}

test('redis-cli --cluster reshard moves the slots of live topics while publishing: 0 silent loss, 0 duplicates', async (t) => {
  const masters = await cluster.masters()
  const [from, to] = masters
  assert.ok(from !== undefined && to !== undefined)
  const [first] = from.slots[0] ?? [0]
  const moved = 300
  // Two topics in the slots that move (redis-cli takes the source's lowest slots first), beside the others.
  const movingTopics: string[] = []
  for (let index = 0; movingTopics.length < 2 && index < 1_000_000; index++) {
    const slot = keySlot(`herald:{moving-${index}}`)
    if (slot >= first && slot < first + moved) movingTopics.push(`moving-${index}`)
  }
  assert.equal(movingTopics.length, 2)
  const allTopics = [...topics, ...movingTopics]
  const herald = await Promise.all([0, 1, 2].map(async () => await build(t, { REDIS_URL: cluster.url })))
  const urls = herald.map(({ url }) => url)
  const query = `/v1/stream?${allTopics.map((topic) => `topic=${encodeURIComponent(topic)}`).join('&')}`
  const clients = urls.map((_, index) => new FailoverClient([...urls.slice(index), ...urls.slice(0, index)], query))
  t.after(() => { for (const client of clients) client.stop() })
  for (const client of clients) client.start()
  await until(async () => {
    for (const topic of allTopics) {
      const owner = await cluster.masterOfSlot(keySlot(`herald:{${topic}}`))
      const counts = await cluster.command(owner.port, 'PUBSUB', 'SHARDNUMSUB', `herald:{${topic}}`) as [string, number]
      if (counts[1] < herald.length) return false
    }
    return true
  }, 15_000, 'every instance subscribed on every shard')

  const accepted = new Map(allTopics.map((topic) => [topic, new Set<number>()]))
  const refused = new Map<number, number>()
  const state = { publishing: true }
  const loops = allTopics.map(async (topic, topicIndex) => {
    for (let n = 0; state.publishing; n++) {
      try {
        const reply = await publish(urls[(n + topicIndex) % urls.length] ?? '', { topic, data: { topic, n } })
        if (reply.status === 202) accepted.get(topic)?.add(n)
        else refused.set(reply.status, (refused.get(reply.status) ?? 0) + 1)
      } catch {
        refused.set(0, (refused.get(0) ?? 0) + 1)
      }
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  })
  await new Promise((resolve) => setTimeout(resolve, 1_000))
  const started = Date.now()
  await cluster.reshard(from.port, to.port, moved)
  const reshardMs = Date.now() - started
  for (const topic of movingTopics) assert.equal((await cluster.masterOfSlot(keySlot(`herald:{${topic}}`))).port, to.port, `${topic} moved`)
  await new Promise((resolve) => setTimeout(resolve, 2_000))
  state.publishing = false
  await Promise.all(loops)
  await until(() => clients.every((client) => client.caughtUp(accepted)), 30_000, 'every client has the last accepted event of every topic')
  const verdicts = clients.map((client) => client.verdict(accepted))
  const total = { silentlyLost: 0, duplicated: 0, resets: 0 }
  for (const verdict of verdicts) {
    total.silentlyLost += verdict.silentlyLost
    total.duplicated += verdict.duplicated
    total.resets += verdict.resets
  }
  const acceptedCount = [...accepted.values()].reduce((sum, ns) => sum + ns.size, 0)
  console.log(`# reshard of ${moved} slots (2 live topics among them) took ${reshardMs} ms while publishing: ${acceptedCount} publishes accepted, refused ${JSON.stringify(Object.fromEntries(refused))}; ` +
    `over ${clients.length} clients: ${total.silentlyLost} silently lost, ${total.duplicated} duplicated, ${total.resets} topic resets`)
  assert.equal(total.silentlyLost, 0)
  assert.equal(total.duplicated, 0)
})

test('SIGKILL of a master while publishing on every shard: its replica is promoted; every client gets every accepted event or a herald.reset for that topic first; 0 silent loss, 0 duplicates', async (t) => {
  const herald = await Promise.all([0, 1, 2].map(async () => await build(t, { REDIS_URL: cluster.url, HERALD_REDIS_COMMAND_TIMEOUT_MS: '500', LOG_LEVEL: 'warn' })))
  const urls = herald.map(({ url }) => url)
  const query = `/v1/stream?${topics.map((topic) => `topic=${encodeURIComponent(topic)}`).join('&')}`
  const clients = urls.map((_, index) => new FailoverClient([...urls.slice(index), ...urls.slice(0, index)], query))
  t.after(() => { for (const client of clients) client.stop() })
  for (const client of clients) client.start()
  await until(async () => {
    for (const topic of topics) {
      const owner = await cluster.masterOfSlot(keySlot(`herald:{${topic}}`))
      const counts = await cluster.command(owner.port, 'PUBSUB', 'SHARDNUMSUB', `herald:{${topic}}`) as [string, number]
      if (counts[1] < herald.length) return false
    }
    return true
  }, 15_000, 'every instance subscribed on every shard')

  const accepted = new Map(topics.map((topic) => [topic, new Set<number>()]))
  const refused = new Map<number, number>()
  const state = { publishing: true }
  const loops = topics.map(async (topic, topicIndex) => {
    for (let n = 1_000; state.publishing; n++) {
      try {
        const reply = await publish(urls[(n + topicIndex) % urls.length] ?? '', { topic, data: { topic, n } })
        if (reply.status === 202) accepted.get(topic)?.add(n)
        else refused.set(reply.status, (refused.get(reply.status) ?? 0) + 1)
      } catch {
        refused.set(0, (refused.get(0) ?? 0) + 1)
      }
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  })
  await new Promise((resolve) => setTimeout(resolve, 1_500))
  const [victim] = await cluster.masters()
  assert.ok(victim !== undefined)
  const { ms: promotionMs } = await cluster.killMaster(victim.port)
  // Some clients move to another instance meanwhile, as after a balancer's reconnect.
  clients[0]?.reconnect()
  await new Promise((resolve) => setTimeout(resolve, 3_000))
  state.publishing = false
  await Promise.all(loops)
  await until(() => clients.every((client) => client.caughtUp(accepted)), 30_000, 'every client has the last accepted event of every topic')
    .catch((error: Error) => {
      const behind = clients.flatMap((client, index) => [...accepted].filter(([topic, ns]) => ns.size > 0 && !client.caughtUp(new Map([[topic, ns]])))
        .map(([topic, ns]) => `client ${index} on ${topic}: last accepted ${Math.max(...ns)}, last received ${JSON.stringify(client.received.filter((entry) => 'reset' in entry || entry.topic === topic).slice(-3))}`))
      const logged = herald[0]?.log.filter((line) => line.level >= 40).slice(-3).map((line) => JSON.stringify({ ...line, time: undefined, pid: undefined, hostname: undefined })).join(' | ')
      const statuses = herald.map(({ app }) => `${app.redis.subscriber?.status ?? '-'}/${app.redis.publisher?.status ?? '-'} ${JSON.stringify(app.hub.health())}`).join(', ')
      throw new Error(`${error.message}; behind: ${behind.slice(0, 2).join('; ')}; subscriber/publisher status and hub health per instance: ${statuses}; the first instance logged: ${logged ?? ''}`)
    })
  const verdicts = clients.map((client) => client.verdict(accepted))
  const total = verdicts.reduce((sum, verdict) => ({
    silentlyLost: sum.silentlyLost + verdict.silentlyLost,
    duplicated: sum.duplicated + verdict.duplicated,
    resets: sum.resets + verdict.resets
  }), { silentlyLost: 0, duplicated: 0, resets: 0 })
  const acceptedCount = [...accepted.values()].reduce((sum, ns) => sum + ns.size, 0)
  console.log(`# master SIGKILLed while publishing: promoted in ${promotionMs} ms; ${acceptedCount} publishes accepted, refused ${JSON.stringify(Object.fromEntries(refused))}; ` +
    `over ${clients.length} clients: ${total.silentlyLost} silently lost, ${total.duplicated} duplicated, ${total.resets} topic resets`)
  assert.equal(total.silentlyLost, 0)
  assert.equal(total.duplicated, 0)
})

test('the failover verdict counts a gap without a reset as silent loss, a gap before a reset as covered, and repeats as duplicates', () => {
  const client = new FailoverClient([], '')
  const accepted = new Map([['a', new Set([1, 2, 3, 4])], ['b', new Set([1, 2, 3])]])
  client.received.push({ topic: 'a', n: 1 }, { topic: 'b', n: 1 }, { reset: ['a'], reason: 'epoch-changed' }, { topic: 'a', n: 3 }, { topic: 'a', n: 4 }, { topic: 'b', n: 3 }, { topic: 'b', n: 3 })
  assert.deepEqual(client.verdict(accepted), { silentlyLost: 1, duplicated: 1, resets: 1 })
  assert.equal(client.caughtUp(accepted), true)
})
