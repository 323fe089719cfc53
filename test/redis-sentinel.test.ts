import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Redis } from 'ioredis'
import { runIdOf } from '../src/redis-topology.js'
import { build, publish, until } from './helper.js'
import { docEnv } from './helpers/doc-examples.js'
import { RedisSentinel } from './helpers/redis-sentinel.js'
import { openStream, payloads } from './helpers/sse-client.js'

test('Sentinel: the docs example; Herald follows a failover: publishes answer 503 for at most the failover, then 202, and streams get them', async (t) => {
  const sentinel = await RedisSentinel.start()
  t.after(() => sentinel.stop())
  const [s1, s2, s3] = sentinel.sentinels.map(({ port }) => port)
  const herald = await build(t, { ...docEnv('sentinel', { 26379: s1 ?? 0, 26380: s2 ?? 0, 26381: s3 ?? 0 }), LOG_LEVEL: 'warn' })
  assert.equal(herald.app.redisTopology.mode, 'sentinel')
  const publisher = herald.app.redis.publisher as Redis
  assert.ok(publisher instanceof Redis)
  assert.deepEqual(publisher.options.sentinels?.map(({ port }) => port), [s1, s2, s3])
  assert.equal(publisher.options.name, 'herald-master')
  const oldMaster = await sentinel.masterPort()
  const oldRunId = runIdOf(String(await sentinel.command(oldMaster, 'INFO', 'server')))
  await until(() => herald.app.redisRunId() === oldRunId, 5_000, 'the run_id of the master')
  assert.equal((await publish(herald.url, { topic: 'failover', data: 'before' })).status, 202)
  const stream = await openStream(`${herald.url}/v1/stream?topic=failover`)
  t.after(() => stream.close())

  const killed = Date.now()
  const { promotedPort, ms: promotionMs } = await sentinel.killMaster()
  let status = 0
  let lastRefusal: unknown
  const statuses = new Map<number, number>()
  while (Date.now() - killed < 30_000) {
    const reply = await publish(herald.url, { topic: 'failover', data: 'after' })
    status = reply.status
    if (status !== 202) lastRefusal = reply.body
    statuses.set(status, (statuses.get(status) ?? 0) + 1)
    if (status === 202) break
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  const recoveredMs = Date.now() - killed
  console.log(`# sentinel failover: replica promoted ${promotionMs} ms after SIGKILL, Herald's publishes answered 202 again after ${recoveredMs} ms (answers meanwhile: ${JSON.stringify(Object.fromEntries(statuses))})`)
  assert.equal(status, 202, `publishes work again after the promotion; the last refusal: ${JSON.stringify(lastRefusal)}; Herald logged: ${
    herald.log.filter((line) => line.level >= 40).map((line) => `${String(line.msg)} ${String(line.err?.message ?? '')}`).slice(-10).join(' | ')}`)
  assert.ok([...statuses.keys()].every((code) => code === 202 || code === 503), 'only 503 while the master is away')
  const newRunId = runIdOf(String(await sentinel.command(promotedPort, 'INFO', 'server')))
  assert.notEqual(newRunId, oldRunId)
  await until(() => herald.app.redisRunId() === newRunId, 5_000, 'the run_id of the promoted master')
  await until(() => payloads(stream.events).includes('after'), 15_000, 'the stream gets the event published after the failover')
})
