import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { build, publish, until } from './helper.js'
import { HeraldProcess } from './helpers/herald-process.js'
import { RedisServer } from './helpers/redis-server.js'
import { openStream, payloads } from './helpers/sse-client.js'

let redis: RedisServer
before(async () => { redis = await RedisServer.start() })
after(async () => { await redis.stop() })

let prefixes = 0
const env = () => ({ REDIS_URL: redis.url, HERALD_REDIS_PREFIX: `instances${++prefixes}:` })

/** Redis's own count of subscribers to a topic's channel: the SSUBSCRIBE took effect, not just was asked for. */
async function numsub (prefix: string, topic: string): Promise<number> {
  const admin = redis.client()
  try {
    return Number((await admin.pubsub('SHARDNUMSUB', `${prefix}{${topic}}`) as [string, number])[1])
  } finally {
    admin.disconnect()
  }
}

test('an event published to instance A reaches a stream on instance B', async (t) => {
  const shared = env()
  const a = await build(t, shared)
  const b = await build(t, shared)
  const onB = await openStream(`${b.url}/v1/stream?topic=chat`)
  const onA = await openStream(`${a.url}/v1/stream?topic=chat`)
  t.after(() => { onA.close(); onB.close() })
  await until(async () => await numsub(shared.HERALD_REDIS_PREFIX, 'chat') === 2, 5_000, 'A and B subscribed in Redis')
  const published = await publish(a.url, { topic: 'chat', data: { from: 'A' } })
  assert.equal(published.status, 202)
  const events = await onB.waitForEvents(1)
  assert.equal(events[0]?.id, published.body.id)
  assert.deepEqual(payloads(events), [{ from: 'A' }])
  await onA.waitForEvents(1)
  const health = await (await fetch(`${b.url}/health`)).json() as { redis: { pingMs: unknown, shards: Array<{ node: string, pingMs: unknown }> } }
  assert.equal(typeof health.redis.pingMs, 'number')
  const shards = [{ node: health.redis.shards[0]?.node, slots: 16384, pingMs: health.redis.shards[0]?.pingMs }]
  assert.deepEqual(health, { status: 'ok', broker: 'redis', redis: { publisher: 'ready', subscriber: 'ready', pingMs: health.redis.pingMs, mode: 'standalone', shards }, subscriptions: 1 })
  assert.match(String(shards[0]?.node), /^127\.0\.0\.1:\d+$/)
})

test('one Redis subscription per topic per instance, however many clients', async (t) => {
  const shared = env()
  const a = await build(t, shared)
  const clients = await Promise.all(Array.from({ length: 20 }, async () => await openStream(`${a.url}/v1/stream?topic=busy`)))
  const admin = redis.client()
  t.after(() => { for (const client of clients) client.close(); admin.disconnect() })
  await until(() => a.app.hub.listenerCount('busy') === 20, 5_000, 'all subscribed')
  await until(async () => await numsub(shared.HERALD_REDIS_PREFIX, 'busy') > 0, 5_000, 'subscribed in Redis')
  assert.equal(await numsub(shared.HERALD_REDIS_PREFIX, 'busy'), 1)
  const clientList = (await admin.client('LIST') as string).split('\n').filter((line) => line.includes(`herald-${process.pid}`))
  assert.equal(clientList.length, 2, 'a publisher and a subscriber connection, no more')
  for (const client of clients) client.close()
  await until(async () => await numsub(shared.HERALD_REDIS_PREFIX, 'busy') === 0, 5_000, 'unsubscribed')
})

test('a client resumes on another instance from shared history', async (t) => {
  const shared = env()
  const a = await build(t, shared)
  const b = await build(t, shared)
  const seen = await publish(a.url, { topic: 'move', data: 0 })
  const missed = []
  for (let index = 1; index <= 4; index++) missed.push((await publish(a.url, { topic: 'move', data: index })).body.id)
  const client = await openStream(`${b.url}/v1/stream?topic=move`, { 'last-event-id': seen.body.id })
  t.after(client.close)
  const events = await client.waitForEvents(4)
  assert.deepEqual(events.map((event) => event.id), missed)
})

test('the compose topology as local processes: Redis plus two Herald processes', async (t) => {
  const shared = env()
  const one = await HeraldProcess.start(shared)
  const two = await HeraldProcess.start(shared)
  t.after(async () => { await one.kill('SIGTERM'); await two.kill('SIGTERM') })
  const client = await openStream(`${two.url}/v1/stream?topic=compose`)
  t.after(client.close)
  await until(async () => await numsub(shared.HERALD_REDIS_PREFIX, 'compose') === 1, 5_000, 'two subscribed in Redis')
  const published = await publish(one.url, { topic: 'compose', data: 'across processes' })
  const events = await client.waitForEvents(1)
  assert.equal(events[0]?.id, published.body.id)
  assert.deepEqual(payloads(events), ['across processes'])
  assert.equal(await one.kill('SIGTERM'), 0, 'graceful exit on SIGTERM')
})
