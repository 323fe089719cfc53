/**
 * `npx tsx bench/redis-shard-cost.ts [publishes=100000] [masters=3]`: what one publish costs Redis as a deployment
 * grows, in Redis's own CPU (INFO cpu before and after), so what else the machine does changes the figures little.
 * - One redis-server: Redis CPU per 100k publishes through the Function library (1,000 topics) while 0, 1, 4 and 16
 *   connections each SSUBSCRIBE every topic, as that many Herald instances with a client on every topic would.
 * - A Redis Cluster of `masters` masters with a replica each: the same publishes, spread over the masters by hash
 *   slot, with 0 and 4 subscribers per master (each on its master's topics, as Herald's sharded subscriber is).
 *   Every node's CPU is given: the masters' shares of the total, and what the replicas spend applying the writes.
 * Calls go 500 at a time (pipelined), as many instances publishing at once would send them.
 */
import calculateSlot from 'cluster-key-slot'
import { Cluster, Redis } from 'ioredis'
import { functionLibrary, publishKeys } from '../src/transport/redis-functions.js'
import { RedisCluster } from '../test/helpers/redis-cluster.js'
import { RedisServer } from '../test/helpers/redis-server.js'

const publishes = Number(process.argv[2] ?? 100_000)
const masterCount = Number(process.argv[3] ?? 3)
const TOPICS = 1000
const library = functionLibrary({ prefix: 'herald:', historySize: 1000, historyRetentionMs: 86_400_000, idempotencyTtlMs: 600_000 })
const data = JSON.stringify({ user: 'ada', text: 'hello world, a chat message of typical size' })
const topicNames = Array.from({ length: TOPICS }, (_, index) => `user/${index}`)
const channels = topicNames.map((topic) => `herald:{${topic}}`)

async function cpuSeconds (client: Redis): Promise<number> {
  const info = await client.info('cpu')
  const read = (name: string): number => Number(new RegExp(`${name}:([0-9.]+)`).exec(info)?.[1] ?? 0)
  return read('used_cpu_user') + read('used_cpu_sys')
}

/** `count` connections to `url`, each SSUBSCRIBEd to `subscribed`; resolves once every subscription is confirmed. */
async function subscribers (url: string, count: number, subscribed: string[]): Promise<{ received: () => number, close: () => void }> {
  const clients = Array.from({ length: count }, () => new Redis(url))
  let received = 0
  const bySlot = new Map<number, string[]>()
  for (const channel of subscribed) bySlot.set(calculateSlot(channel), [...bySlot.get(calculateSlot(channel)) ?? [], channel])
  for (const client of clients) {
    client.on('smessage', () => { received++ })
    // One SSUBSCRIBE per hash slot: a cluster refuses one whose channels span slots.
    for (const group of bySlot.values()) await client.ssubscribe(...group)
  }
  return { received: () => received, close: () => { for (const client of clients) client.disconnect() } }
}

async function publishAll (call: (index: number) => Promise<unknown>): Promise<number> {
  const started = performance.now()
  for (let index = 0; index < publishes; index += 500) {
    await Promise.all(Array.from({ length: Math.min(500, publishes - index) }, async (_, offset) => await call(index + offset)))
  }
  return publishes / ((performance.now() - started) / 1000)
}

const per100k = (seconds: number): string => (seconds * 100_000 / publishes).toFixed(2)

const standalone = await RedisServer.start()
const client = new Redis(standalone.url)
try {
  for (const count of [0, 1, 4, 16]) {
    await client.flushall()
    await client.call('FUNCTION', 'LOAD', 'REPLACE', library.code)
    const listening = await subscribers(standalone.url, count, channels)
    const before = await cpuSeconds(client)
    const rate = await publishAll(async (index) => await client.fcall(library.publish, 2, ...publishKeys('herald:', topicNames[index % TOPICS] as string), data, 'message'))
    const cpu = await cpuSeconds(client) - before
    // Let the last messages reach the subscribers before counting them.
    await new Promise((resolve) => setTimeout(resolve, 500))
    console.log(`one Redis, ${count} subscriber(s) per topic: Redis ${per100k(cpu)} CPU-s per 100k publishes, ${Math.round(rate)}/s, ${listening.received()} messages received (${publishes * count} sent)`)
    listening.close()
  }
} finally {
  client.disconnect()
  await standalone.stop()
}

const cluster = await RedisCluster.start({ masters: masterCount })
const cli = new Cluster([{ host: '127.0.0.1', port: cluster.nodes[0]?.port ?? 0 }])
const nodes = cluster.nodes.map((node) => ({ port: node.port, client: cluster.client(node.port) }))
try {
  await Promise.all(nodes.map(async (node) => await node.client.connect()))
  const masters = await cluster.masters()
  const ownerOf = (channel: string): number => {
    const slot = calculateSlot(channel)
    return masters.find((master) => master.slots.some(([first, last]) => slot >= first && slot <= last))?.port ?? 0
  }
  const topicsPerMaster = masters.map((master) => channels.filter((channel) => ownerOf(channel) === master.port).length)
  console.log(`cluster: ${masters.length} masters with ${topicsPerMaster.join(', ')} of the ${TOPICS} topics`)
  for (const count of [0, 4]) {
    for (const master of masters) {
      const node = nodes.find((candidate) => candidate.port === master.port) as { client: Redis }
      await node.client.flushall()
      await node.client.call('FUNCTION', 'LOAD', 'REPLACE', library.code)
    }
    const listening = await Promise.all(masters.map(async (master) => await subscribers(cluster.urlOf(master.port), count, channels.filter((channel) => ownerOf(channel) === master.port))))
    // Replicas must have the library too before their CPU is read: FUNCTION LOAD replicates, give it a moment.
    await new Promise((resolve) => setTimeout(resolve, 500))
    const before = await Promise.all(nodes.map(async (node) => await cpuSeconds(node.client)))
    const rate = await publishAll(async (index) => await cli.fcall(library.publish, 2, ...publishKeys('herald:', topicNames[index % TOPICS] as string), data, 'message'))
    const after = await Promise.all(nodes.map(async (node) => await cpuSeconds(node.client)))
    const spent = nodes.map((node, index) => ({ port: node.port, master: masters.some((master) => master.port === node.port), cpu: (after[index] as number) - (before[index] as number) }))
    const masterTotal = spent.filter((node) => node.master).reduce((sum, node) => sum + node.cpu, 0)
    const shares = spent.filter((node) => node.master).map((node) => `${per100k(node.cpu)} (${(100 * node.cpu / masterTotal).toFixed(1)}%)`)
    const replicas = spent.filter((node) => !node.master).map((node) => per100k(node.cpu))
    await new Promise((resolve) => setTimeout(resolve, 500))
    const received = listening.reduce((sum, set) => sum + set.received(), 0)
    console.log(`cluster, ${count} subscriber(s) per topic: masters ${per100k(masterTotal)} CPU-s per 100k publishes in all, each ${shares.join(', ')}; replicas ${replicas.join(', ')}; ${Math.round(rate)}/s through one ioredis Cluster client; ${received} messages received (${publishes * count} sent)`)
    for (const set of listening) set.close()
  }
} finally {
  cli.disconnect()
  for (const node of nodes) node.client.disconnect()
  await cluster.stop()
}
