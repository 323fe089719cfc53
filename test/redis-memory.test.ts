/**
 * Redis at its memory bound. Under `noeviction` (what compose ships) a full Redis refuses writes: a publish is a
 * 503 that says so. Under a policy that evicts (a managed Redis's default, a shared cache), a topic's history may
 * vanish before its retention: a client that was away gets herald.reset, never a silent gap.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Redis } from 'ioredis'
import { build, publish, until } from './helper.js'
import { RedisServer } from './helpers/redis-server.js'
import { openStream } from './helpers/sse-client.js'
import { epochOf } from './helpers/event-ids.js'

/** Lowers maxmemory to just above what Redis uses now, so the next writes meet it. */
async function nearlyFull (admin: Redis): Promise<void> {
  const info = await admin.info('memory')
  const used = Number(/used_memory:(\d+)/.exec(info)?.[1])
  await admin.config('SET', 'maxmemory', String(used + 64 * 1024))
}

test('Redis at maxmemory under noeviction: a publish is a 503 HERALD_REDIS_FULL that says so; streams and reads go on', { timeout: 60_000 }, async (t) => {
  const redis = await RedisServer.start()
  t.after(async () => await redis.stop())
  const admin = redis.client()
  t.after(() => admin.disconnect())
  await admin.config('SET', 'maxmemory-policy', 'noeviction')
  const { url } = await build(t, { REDIS_URL: redis.url })
  const first = await publish(url, { topic: 'full', data: 'before' })
  assert.equal(first.status, 202)

  await nearlyFull(admin)
  // Filler of Herald's own kind: a publish of 64 new topics until Redis refuses.
  let refused: { status: number, body: any } | undefined
  for (let round = 0; round < 200 && refused === undefined; round++) {
    const reply = await publish(url, { topic: Array.from({ length: 64 }, (_, index) => `fill/${round}/${index}`), data: 'x'.repeat(1000) })
    if (reply.status !== 202) refused = reply
  }
  assert.ok(refused !== undefined, 'Redis refused a publish')
  assert.equal(refused.status, 503)
  assert.deepEqual({ code: refused.body.code, error: refused.body.error }, { code: 'HERALD_REDIS_FULL', error: 'Service Unavailable' })
  assert.match(refused.body.message, /^Redis is out of memory \(used memory above its maxmemory/)
  assert.match(refused.body.message, /the event was not stored/)

  // Reads need no memory: a client resuming still gets what was stored.
  const reader = await openStream(`${url}/v1/stream?topic=full&lastEventId=0`)
  t.after(reader.close)
  const [event] = await reader.waitForEvents(1)
  assert.equal(event?.data, '"before"')
  await admin.config('SET', 'maxmemory', '0')
  assert.equal((await publish(url, { topic: 'full', data: 'after' })).status, 202, 'publishes work again once Redis has room')
  await reader.waitForEvents(2)
})

test('history evicted while a client is away: on resume it gets herald.reset before any later event, never a silent gap', { timeout: 60_000 }, async (t) => {
  const redis = await RedisServer.start()
  t.after(async () => await redis.stop())
  const admin = redis.client()
  t.after(() => admin.disconnect())
  // volatile-ttl evicts the key nearest its expiry first: here the away topic's history, the oldest written.
  await admin.config('SET', 'maxmemory-policy', 'volatile-ttl')
  const { url } = await build(t, { REDIS_URL: redis.url })
  const seen = await publish(url, { topic: 'away', data: 1 })
  for (const data of [2, 3]) assert.equal((await publish(url, { topic: 'away', data })).status, 202)
  await new Promise((resolve) => setTimeout(resolve, 20))
  // Later expiries for another topic's keys than the away topic's (its state and history expire together).
  assert.equal((await publish(url, { topic: 'other', data: 'later' })).status, 202)

  await nearlyFull(admin)
  // Keys without an expiry are never evicted under volatile-ttl: they only fill Redis until it evicts.
  const away = async (): Promise<number> => await admin.exists('herald:{away}:h', 'herald:{away}:m')
  for (let index = 0; index < 1000 && await away() === 2; index++) {
    await admin.set(`filler:${index}`, 'x'.repeat(4096))
  }
  // Either key may go first: an evicted history reads as trimmed, an evicted state starts a new epoch.
  assert.ok(await away() < 2, 'Redis evicted the away topic\'s history or state')
  t.diagnostic(`evicted: history ${String(await admin.exists('herald:{away}:h') === 0)}, state ${String(await admin.exists('herald:{away}:m') === 0)}`)
  await admin.config('SET', 'maxmemory', '0')

  // A client back before anything new: nothing to replay, but events 2 and 3 are gone.
  const early = await openStream(`${url}/v1/stream?topic=away`, { 'last-event-id': seen.body.id })
  t.after(early.close)
  const later = await publish(url, { topic: 'away', data: 4 })
  assert.equal(later.status, 202)
  // A client back after a new event recreated the topic: when its state was evicted too, that event is of a new
  // epoch, older than the client's arrival: the reset, then what comes after it.
  const late = await openStream(`${url}/v1/stream?topic=away`, { 'last-event-id': seen.body.id })
  t.after(late.close)
  await until(() => late.events.length > 0, 5_000, 'the late client\'s first event')
  const last = await publish(url, { topic: 'away', data: 5 })
  assert.equal(last.status, 202)
  const stateEvicted = epochOf(later.body.id) !== epochOf(seen.body.id)
  for (const [client, expected] of [[early, ['4', '5']], [late, stateEvicted ? ['5'] : ['4', '5']]] as const) {
    await until(() => client.events.some((event) => event.id === last.body.id), 5_000, 'the last event')
    const names = client.events.map((event) => event.event ?? 'message')
    t.diagnostic(`events: ${JSON.stringify(client.events.map((event) => [event.event, event.id, event.data]))}`)
    assert.equal(names[0], 'herald.reset', 'a reset before anything else')
    assert.deepEqual(client.events.slice(1).map((event) => event.data), expected)
  }
})
