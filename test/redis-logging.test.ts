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
  await until(async () => Number((await admin.pubsub('SHARDNUMSUB', 'herald:{killed}') as [string, number])[1]) === 1, 5_000, 'subscribed')

  await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub')
  const published = await publish(url, { topic: 'killed', data: 'after the kill' })
  assert.equal(published.status, 202)
  for (const stream of streams) await until(() => stream.events.some((event) => event.id === published.body.id), 5_000, 'the event after the drop')

  const warnings = lines.filter((line) => line.level >= 40 && !String(line.msg).startsWith('OPEN DEVELOPMENT MODE'))
  assert.equal(warnings.length, 1, JSON.stringify(warnings))
  assert.equal(warnings[0]?.connection, 'subscriber')
  assert.equal(warnings[0]?.name, `herald-${process.pid}-subscriber`)
  assert.match(warnings[0]?.msg, /subscriber connection/)
  const restored = lines.filter((line) => line.msg === 'Redis connection restored')
  assert.equal(restored.length, 1)
  assert.match(restored[0]?.likelyCause, /CLIENT KILL/, 'Redis took the reconnect at once: a close by Redis is the likely cause')
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

test('a Redis SIGKILL: each connection\'s loss is told by its error, or by its close and then the refused reconnect (Redis down), never by a CLIENT KILL guess', { timeout: 60_000 }, async (t) => {
  const redis = await RedisServer.start()
  t.after(async () => await redis.stop())
  const { app, url, log: lines } = await build(t, { LOG_LEVEL: 'info', REDIS_URL: redis.url })
  const stream = await openStream(`${url}/v1/stream?topic=sigkill`)
  t.after(() => stream.close())
  await until(() => app.hub.streamCount === 1, 5_000, 'subscribed')
  await redis.kill()
  const warned = (pattern: RegExp): string[] => lines.filter((line) => line.level === 40 && pattern.test(line.msg)).map((line) => line.msg as string)
  // ioredis reports a connection's end as an error (ECONNRESET: logged with it) or as a bare close (then the
  // refused reconnect says more); which one comes first varies.
  const told = (connection: string): boolean => lines.some((line) => line.level === 40 && line.connection === connection &&
    (line.msg === 'Redis connection lost; reconnecting' || /^reconnecting the Redis .* connection fails/.test(line.msg)))
  await until(() => told('publisher') && told('subscriber'), 20_000, 'each connection\'s loss told').catch((error: Error) => {
    throw new Error(`${error.message}; logged: ${JSON.stringify(lines.map((line) => line.msg))}`)
  })
  await redis.startProcess()
  await until(() => lines.filter((line) => line.msg === 'Redis connection restored').length === 2, 20_000, 'both connections restored')
  const said = lines.filter((line) => line.level >= 40 && !String(line.msg).startsWith('OPEN DEVELOPMENT MODE')).map((line) => line.msg as string)
  t.diagnostic(`warn lines after a SIGKILL and a restart: ${JSON.stringify(said)}`)
  assert.equal(warned(/^Redis closed the (publisher|subscriber) connection; reconnecting/).length, warned(/^reconnecting the Redis .* connection fails/).length, 'each close followed by the refused reconnect')
  for (const message of warned(/reconnecting the Redis .* connection fails/)) assert.match(message, /\(.*ECONNREFUSED.*\): Redis is down or restarting/)
  assert.doesNotMatch(said.join('\n'), /CLIENT KILL|output buffer/, 'no guess the facts do not support')
  assert.deepEqual(lines.filter((line) => line.msg === 'Redis connection restored' && line.likelyCause !== undefined), [], 'nor on the restored lines')
})

test('publishes during a Redis outage: the 503s are logged once at warn without a stack, and counted in one line when publishing works again', { timeout: 60_000 }, async (t) => {
  const redis = await RedisServer.start()
  t.after(async () => await redis.stop())
  const { url, log: lines } = await build(t, { LOG_LEVEL: 'info', REDIS_URL: redis.url, HERALD_REDIS_COMMAND_TIMEOUT_MS: '300' })
  assert.equal((await publish(url, { topic: 'outage', data: 'before' })).status, 202)
  await redis.kill()
  const refused = 40
  for (let i = 0; i < refused; i++) assert.equal((await publish(url, { topic: 'outage', data: i })).status, 503)
  await redis.startProcess()
  await until(async () => (await publish(url, { topic: 'outage', data: 'after' })).status === 202, 20_000, 'publishing again')
  const about = lines.filter((line) => line.code === 'HERALD_BROKER_UNAVAILABLE')
  t.diagnostic(`${refused} publishes answered 503 left ${about.length} log lines: ${JSON.stringify(about.map(({ level, msg, count, durationMs }) => ({ level, msg, count, durationMs })))}`)
  const warnings = about.filter((line) => line.level === 40)
  assert.equal(warnings.length, 1, 'one warning for the outage')
  assert.equal(warnings[0]?.err, undefined, 'no stack')
  assert.ok(JSON.stringify(lines).split('\\n    at ').length < 5, 'no stack anywhere in the log')
  const summaries = about.filter((line) => line.level === 30)
  assert.equal(summaries.length, 1, 'one summary when publishing works again')
  // The 503s sent while the publish to tell recovery was retried count too.
  assert.ok(summaries[0]?.count >= refused, `count ${summaries[0]?.count}`)
})
