// What Herald says about Redis: each drop of a connection once, an outage once however many streams it touches.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { build, publish, until } from './helper.js'
import { RedisServer } from './helpers/redis-server.js'
import { openStream } from './helpers/sse-client.js'

test('CLIENT KILL TYPE pubsub (as Redis does past the pub/sub output buffer limit): one warn line naming the subscriber connection; streams go on', { timeout: 30_000 }, async (t) => {
  const redis = await RedisServer.start()
  t.after(async () => await redis.stop())
  const { url, log: lines } = await build(t, { LOG_LEVEL: 'info', REDIS_URL: redis.url })
  const streams = await Promise.all([1, 2, 3, 4, 5].map(async () => await openStream(`${url}/v1/stream?topic=killed`)))
  t.after(() => { for (const stream of streams) stream.close() })
  const admin = redis.client()
  t.after(() => admin.disconnect())
  await until(async () => Number((await admin.pubsub('NUMSUB', 'herald:topic:killed') as [string, number])[1]) === 1, 5_000, 'subscribed')

  await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub')
  const published = await publish(url, { topic: 'killed', data: 'after the kill' })
  assert.equal(published.status, 202)
  for (const stream of streams) await until(() => stream.events.some((event) => event.id === published.body.id), 5_000, 'the event after the drop')

  const warnings = lines.filter((line) => line.level >= 40 && !String(line.msg).startsWith('OPEN DEVELOPMENT MODE'))
  assert.equal(warnings.length, 1, JSON.stringify(warnings))
  assert.equal(warnings[0]?.connection, 'subscriber')
  assert.equal(warnings[0]?.name, `herald-${process.pid}-subscriber`)
  assert.match(warnings[0]?.msg, /subscriber connection/)
  assert.equal(lines.filter((line) => line.msg === 'Redis connection restored').length, 1)
})

test('a Redis outage with many open streams: the failing catch-ups are logged once, not once per stream', { timeout: 30_000 }, async (t) => {
  const redis = await RedisServer.start()
  t.after(async () => await redis.stop())
  const { app, url, log: lines } = await build(t, { LOG_LEVEL: 'info', REDIS_URL: redis.url })
  const streams = await Promise.all(Array.from({ length: 20 }, async () => await openStream(`${url}/v1/stream?topic=outage`)))
  t.after(() => { for (const stream of streams) stream.close() })
  // Only the publisher is killed: the subscriber stays, and each stream's catch-up (after the drop of the
  // subscriber that comes next) reads through the publisher, which is away.
  const admin = redis.client()
  t.after(() => admin.disconnect())
  await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub')
  await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes')
  await until(() => app.hub.health().status === 'ok', 10_000, 'healthy')
  const catchUpWarnings = lines.filter((line) => typeof line.msg === 'string' && line.msg.startsWith('catch-up from history failed'))
  t.diagnostic(`${catchUpWarnings.length} catch-up warning(s) for ${streams.length} streams; warn lines: ${lines.filter((line) => line.level >= 40).map((line) => line.msg).join(' | ')}`)
  assert.ok(catchUpWarnings.length <= 1, `${catchUpWarnings.length} catch-up warnings`)
})
