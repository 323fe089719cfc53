import assert from 'node:assert/strict'
import { test } from 'node:test'
import { seq } from './helpers/event-ids.js'
import { build, publish, until } from './helper.js'
import { RedisServer } from './helpers/redis-server.js'
import { openStream } from './helpers/sse-client.js'

async function healthOf (url: string): Promise<{ status: string, redis?: { pingMs: number | null } }> {
  return await (await fetch(`${url}/health`, { signal: AbortSignal.timeout(10_000) })).json() as { status: string, redis?: { pingMs: number | null } }
}

test('a hung Redis (SIGSTOP): publishes answer 503 within about the command timeout, /health degrades; after SIGCONT all is well and no accepted event is lost', { timeout: 60_000 }, async (t) => {
  const redis = await RedisServer.start()
  t.after(async () => await redis.stop())
  // The default command timeout (1 s): what a deployment gets.
  const { url, config } = await build(t, { REDIS_URL: redis.url, HERALD_HEARTBEAT_MS: '100' })
  assert.equal(config.redisCommandTimeoutMs, 1_000)
  const streams = await Promise.all([1, 2, 3].map(async () => await openStream(`${url}/v1/stream?topic=hung`)))
  t.after(() => { for (const stream of streams) stream.close() })
  const accepted: string[] = []
  for (let index = 0; index < 5; index++) {
    const reply = await publish(url, { topic: 'hung', data: { before: index } })
    assert.equal(reply.status, 202)
    accepted.push(reply.body.id)
  }
  assert.equal((await healthOf(url)).status, 'ok')

  redis.pause()
  t.after(() => redis.resume())
  const pausedAt = performance.now()
  await until(async () => (await healthOf(url)).status === 'degraded', 5_000, '/health to say degraded')
  const degradedAfter = performance.now() - pausedAt
  assert.equal((await healthOf(url)).redis?.pingMs, null)

  const timings: number[] = []
  for (let index = 0; index < 3; index++) {
    const started = performance.now()
    const reply = await publish(url, { topic: 'hung', data: { during: index } })
    timings.push(performance.now() - started)
    assert.equal(reply.status, 503)
    assert.equal(reply.body.code, 'HERALD_BROKER_UNAVAILABLE')
    assert.match(reply.body.message, /did not answer in time/)
  }
  // Generous: the command timeout is 1 s; a hang would hit the 10 s fetch timeout.
  for (const ms of timings) assert.ok(ms < 3_000, `a publish to a hung Redis took ${ms.toFixed(0)} ms`)

  t.diagnostic(`hung Redis: /health degraded ${degradedAfter.toFixed(0)} ms after SIGSTOP; publishes answered 503 in ${timings.map((ms) => ms.toFixed(0)).join(', ')} ms`)

  redis.resume()
  const resumedAt = performance.now()
  await until(async () => (await healthOf(url)).status === 'ok', 5_000, '/health to say ok again')
  t.diagnostic(`/health ok again ${(performance.now() - resumedAt).toFixed(0)} ms after SIGCONT`)
  for (let index = 0; index < 5; index++) {
    const reply = await publish(url, { topic: 'hung', data: { after: index } })
    assert.equal(reply.status, 202)
    accepted.push(reply.body.id)
  }
  // Every 202 reaches every stream, in order, once; the timed-out publishes may arrive too (Redis ran them late).
  for (const stream of streams) {
    await until(() => accepted.every((id) => stream.events.some((event) => event.id === id)), 5_000, 'every accepted event')
    const ids = stream.events.map((event) => seq(event.id))
    assert.deepEqual(ids, [...ids].sort((x, y) => x - y), 'in order')
    assert.equal(new Set(ids).size, ids.length, 'no duplicate')
    assert.equal(stream.ended(), false, 'the stream stayed open')
  }
})
