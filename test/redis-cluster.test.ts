import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { Cluster, Redis } from 'ioredis'
import { keySlot, runIdOf } from '../src/redis-topology.js'
import { build, until } from './helper.js'
import { docCommand, docEnv } from './helpers/doc-examples.js'
import { RedisCluster, type ClusterMaster } from './helpers/redis-cluster.js'

// One real cluster (3 masters + 3 replicas) for the file; the test that kills a master runs last.
let cluster: RedisCluster
before(async () => { cluster = await RedisCluster.start() })
after(async () => await cluster.stop())

interface Health {
  status: string
  redis: { mode: string, pingMs: number | null, shards: Array<{ node: string, slots: number, pingMs: number | null, error?: string }> }
}

async function healthOf (url: string): Promise<Health> {
  return await (await fetch(`${url}/health`, { signal: AbortSignal.timeout(10_000) })).json() as Health
}

/** A key under Herald's hash-tag layout whose slot each master owns, one per master. */
function keysPerMaster (masters: ClusterMaster[]): Map<number, string> {
  const keys = new Map<number, string>()
  for (let index = 0; keys.size < masters.length && index < 10_000; index++) {
    const key = `herald:{topic-${index}}:seq`
    const slot = keySlot(key)
    const owner = masters.find((master) => master.slots.some(([first, last]) => slot >= first && slot <= last))
    if (owner !== undefined && !keys.has(owner.port)) keys.set(owner.port, key)
  }
  return keys
}

async function runIdOfNode (port: number): Promise<string | undefined> {
  return runIdOf(String(await cluster.command(port, 'INFO', 'server')))
}

test('detection: the docs example pointed at one node (a replica will do) runs Cluster clients, the subscriber with sharded pub/sub; /health lists every master', async (t) => {
  const masters = await cluster.masters()
  const replica = masters[0]?.replicaPorts[0]
  assert.ok(replica !== undefined)
  const herald = await build(t, docEnv('cluster', { 7000: replica }))
  assert.equal(herald.app.redisTopology.mode, 'cluster')
  const { publisher, subscriber } = herald.app.redis
  assert.ok(publisher instanceof Cluster && subscriber instanceof Cluster)
  assert.equal((subscriber as Cluster).options.shardedSubscribers, true)
  assert.notEqual((publisher as Cluster).options.shardedSubscribers, true)

  const health = await healthOf(herald.url)
  assert.equal(health.status, 'ok')
  assert.equal(health.redis.mode, 'cluster')
  assert.deepEqual(health.redis.shards.map(({ node, slots }) => ({ node, slots })).sort((a, b) => a.node.localeCompare(b.node)),
    masters.map(({ port, slotCount }) => ({ node: `127.0.0.1:${port}`, slots: slotCount })).sort((a, b) => a.node.localeCompare(b.node)))
  assert.ok(health.redis.shards.every(({ pingMs }) => typeof pingMs === 'number'))
  assert.equal((await fetch(`${herald.url}/health/ready`)).status, 200)

  // The slot function agrees with Redis, and a sharded message reaches the subscriber from every shard.
  const keys = [...keysPerMaster(masters).values()]
  assert.equal(keys.length, 3)
  for (const key of keys) assert.equal(keySlot(key), await cluster.command(masters[0]?.port ?? 0, 'CLUSTER', 'KEYSLOT', key))
  const channels = keys.map((key) => key.replace(/:seq$/, ''))
  const received: string[] = []
  ;(subscriber as Cluster).on('smessage', (channel: string) => received.push(channel))
  await (subscriber as Cluster).ssubscribe(...channels.slice(0, 1))
  for (const channel of channels.slice(1)) await (subscriber as Cluster).ssubscribe(channel)
  for (const channel of channels) await (publisher as Cluster).spublish(channel, 'hello')
  await until(() => received.length === channels.length, 5_000, 'one sharded message from each shard')
  assert.deepEqual(received.sort(), [...channels].sort())
  for (const channel of channels) await (subscriber as Cluster).sunsubscribe(channel)
})

test('HERALD_REDIS_MODE forces the mode: standalone talks to the one node, cluster skips the detection', async (t) => {
  const standalone = await build(t, { REDIS_URL: cluster.url, HERALD_REDIS_MODE: 'standalone' })
  assert.equal(standalone.app.redisTopology.mode, 'standalone')
  assert.ok(standalone.app.redis.publisher instanceof Redis && !(standalone.app.redis.publisher instanceof Cluster))
  assert.equal((await healthOf(standalone.url)).redis.shards.length, 1)
  const forced = await build(t, { REDIS_URL: cluster.url, HERALD_REDIS_MODE: 'cluster' })
  assert.equal(forced.app.redisTopology.mode, 'cluster')
  assert.ok(forced.app.redis.publisher instanceof Cluster)
})

test('the docs\' ACL user on every node: Herald starts, is ready and knows each slot owner\'s run_id', async (t) => {
  const [, ...command] = docCommand('acl')
  for (const node of cluster.nodes) assert.equal(await cluster.command(node.port, command[0] ?? '', ...command.slice(1)), 'OK')
  const port = cluster.nodes[0]?.port ?? 0
  const herald = await build(t, docEnv('acl-url', { 6379: port }))
  assert.equal(herald.app.redisTopology.mode, 'cluster')
  assert.equal((await fetch(`${herald.url}/health/ready`)).status, 200)
  for (const [owner, key] of keysPerMaster(await cluster.masters())) {
    const expected = await runIdOfNode(owner)
    await until(() => herald.app.redisRunId(key) === expected, 5_000, `the run_id of 127.0.0.1:${owner} for ${key}`)
  }
})

test('health per shard: a master and its replica SIGSTOPped make /health/ready 503 and /health name that shard; SIGCONT heals', async (t) => {
  const herald = await build(t, { REDIS_URL: cluster.url, HERALD_REDIS_COMMAND_TIMEOUT_MS: '300' })
  const [stopped] = await cluster.masters()
  assert.ok(stopped !== undefined)
  const ports = [stopped.port, ...stopped.replicaPorts]
  t.after(() => { for (const port of ports) cluster.resume(port) })
  // The replica too: otherwise it would be promoted, and the shard would answer again.
  for (const port of ports) cluster.pause(port)
  const paused = Date.now()
  let ready: Response | undefined
  await until(async () => {
    ready = await fetch(`${herald.url}/health/ready`)
    return ready.status === 503
  }, 10_000, '/health/ready 503')
  console.log(`# a stopped shard made /health/ready answer 503 after ${Date.now() - paused} ms`)
  assert.deepEqual(await ready?.json(), { status: 'not-ready', reasons: ['redis-not-answering'] })
  const health = await healthOf(herald.url)
  assert.equal(health.status, 'degraded')
  const shard = health.redis.shards.find(({ node }) => node === `127.0.0.1:${stopped.port}`)
  assert.equal(shard?.pingMs, null)
  assert.match(shard?.error ?? '', /timed out/i)
  assert.ok(health.redis.shards.filter(({ node }) => node !== shard?.node).every(({ pingMs }) => typeof pingMs === 'number'))

  for (const port of ports) cluster.resume(port)
  await cluster.waitForState('ok', 30_000)
  await until(async () => (await fetch(`${herald.url}/health/ready`)).status === 200, 15_000, '/health/ready 200 after SIGCONT')
})

test('redisRunId per slot: the owner\'s run_id; after its master is SIGKILLed and the replica promoted, the promoted one\'s, and /health follows', async (t) => {
  const herald = await build(t, { REDIS_URL: cluster.url })
  const masters = await cluster.masters()
  const keys = keysPerMaster(masters)
  const before = new Map<number, string | undefined>()
  for (const [owner, key] of keys) {
    before.set(owner, await runIdOfNode(owner))
    await until(() => herald.app.redisRunId(key) === before.get(owner), 5_000, `the run_id of 127.0.0.1:${owner}`)
  }
  assert.equal(new Set(before.values()).size, 3)
  assert.equal(herald.app.redisRunId(), undefined, 'no key, no owner')

  const [victim, ...others] = masters
  assert.ok(victim !== undefined)
  const victimKey = keys.get(victim.port) ?? ''
  const { promotedPort, ms: promotionMs } = await cluster.killMaster(victim.port)
  const promotedRunId = await runIdOfNode(promotedPort)
  const killedAt = Date.now() - promotionMs
  await until(() => herald.app.redisRunId(victimKey) === promotedRunId, 15_000, 'the promoted replica\'s run_id for the slot')
  const followedMs = Date.now() - killedAt
  for (const other of others) assert.equal(herald.app.redisRunId(keys.get(other.port) ?? ''), before.get(other.port))
  await until(async () => (await fetch(`${herald.url}/health/ready`)).status === 200, 15_000, '/health/ready 200 on the new owner')
  const health = await healthOf(herald.url)
  assert.ok(health.redis.shards.some(({ node }) => node === `127.0.0.1:${promotedPort}`))
  assert.ok(!health.redis.shards.some(({ node }) => node === `127.0.0.1:${victim.port}`))
  console.log(`# cluster failover: replica promoted ${promotionMs} ms after SIGKILL; redisRunId followed ${followedMs} ms and /health/ready was 200 again ${Date.now() - killedAt} ms after the SIGKILL`)
})
