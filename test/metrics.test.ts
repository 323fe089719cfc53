import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { test } from 'node:test'
import { build, publish, until } from './helper.js'
import { scrape } from './helpers/metrics.js'
import { RedisServer } from './helpers/redis-server.js'
import { openStream } from './helpers/sse-client.js'
import { SECRET, token } from './helpers/tokens.js'
import { Redis } from 'ioredis'

for (const broker of ['memory', 'redis'] as const) {
  test(`${broker}: /metrics counts what real traffic did`, { timeout: 60_000 }, async (t) => {
    const env: Record<string, string> = { HERALD_MAX_STREAMS_PER_ADDRESS: '3' }
    if (broker === 'redis') {
      const redis = await RedisServer.start()
      t.after(async () => await redis.stop())
      env.REDIS_URL = redis.url
    }
    const { app, url } = await build(t, env)
    const before = await scrape(app)
    assert.equal(before.value('herald_streams_open'), 0)
    assert.equal(before.value('herald_events_published_total', { result: 'stored' }), 0)
    // The process's defaults are there too.
    assert.ok(before.value('process_resident_memory_bytes') !== undefined, 'default process metrics')

    const one = await openStream(`${url}/v1/stream?topic=m1`)
    const both = await openStream(`${url}/v1/stream?topic=m1&topic=m2`)
    const malformed = await openStream(`${url}/v1/stream?topic=m2&lastEventId=not-an-id`)
    // The address's fourth stream is refused (in band, retryably).
    const refused = await openStream(`${url}/v1/stream?topic=m1`)
    await until(() => refused.ended(), 5_000, 'the refusal to end')
    assert.match(refused.text(), /herald\.unavailable/)
    t.after(() => { for (const stream of [one, both, malformed]) stream.close() })

    for (let index = 0; index < 4; index++) assert.equal((await publish(url, { topic: 'm1', data: { index } })).status, 202)
    assert.equal((await publish(url, { topic: 'm2', data: 'x', idempotencyKey: 'k1' })).status, 202)
    assert.equal((await publish(url, { topic: 'm2', data: 'x', idempotencyKey: 'k1' })).status, 202)
    assert.equal((await publish(url, { topic: 'bad topic', data: 1 })).status, 400)
    await one.waitForEvents(4)
    await both.waitForEvents(5)
    await malformed.waitForEvents(2)

    const after = await scrape(app)
    assert.equal(after.value('herald_streams_open'), 3)
    assert.equal(after.value('herald_topics_active'), 2)
    assert.equal(after.value('herald_subscriptions'), 4)
    assert.equal(after.value('herald_events_published_total', { result: 'stored' }), 5)
    assert.equal(after.value('herald_events_published_total', { result: 'duplicate' }), 1)
    assert.equal(after.value('herald_events_published_total', { result: 'refused' }), 1)
    assert.equal(after.value('herald_publish_refusals_total', { reason: 'invalid' }), 1)
    // `one` and `both` read what came since they arrived; `malformed` got a reset without reading.
    assert.equal(after.value('herald_replays_started_total', { kind: 'new' }), 2)
    assert.equal(after.value('herald_replays_finished_total', { kind: 'new', result: 'done' }), 2)
    assert.equal(after.value('herald_replays_started_total', { kind: 'resume' }), 0)
    assert.equal(after.value('herald_publish_duration_seconds_count'), 7)
    // 4 to `one`, 5 to `both`, 1 to `malformed` (after its reset): each event once per stream.
    assert.equal(after.value('herald_deliveries_total'), 10)
    assert.ok((after.value('herald_bytes_out_total') ?? 0) > 10 * 20, 'bytes out')
    assert.equal(after.value('herald_resets_sent_total', { reason: 'malformed-id' }), 1)
    assert.equal(after.value('herald_resets_sent_total', { reason: 'history-trimmed' }), 0)
    assert.equal(after.value('herald_stream_refusals_total', { reason: 'address-limit' }), 1)
    // Each live event is dispatched once by this instance, however many streams get it.
    assert.equal(after.value('herald_dispatch_lag_seconds_count'), 5)
    assert.equal(after.value('herald_draining'), 0)
    if (broker === 'redis') {
      assert.equal(after.value('herald_redis_up'), 1)
      assert.ok((after.value('herald_redis_command_duration_seconds_count', { command: 'publish' }) ?? 0) >= 6, 'publish commands timed')
      assert.ok((after.value('herald_redis_command_duration_seconds_count', { command: 'read' }) ?? 0) >= 1, 'history reads timed')
    } else {
      assert.equal(after.value('herald_redis_up'), undefined, 'no Redis, no Redis metrics')
    }

    one.close()
    await until(async () => (await scrape(app)).value('herald_streams_open') === 2, 5_000, 'the closed stream to be counted')
    const closed = await scrape(app)
    assert.equal(closed.value('herald_streams_closed_total', { reason: 'client-closed' }), 1)
    assert.equal(closed.value('herald_deliveries_total'), 10, 'a closed stream\'s deliveries stay counted')
    assert.equal(closed.value('herald_clients_dropped_total', { reason: 'slow-client' }), 0)
  })
}

test('auth failures and rate-limited publishes are counted by status, never by token or topic', { timeout: 30_000 }, async (t) => {
  const { app, url } = await build(t, { HERALD_JWT_SECRET: SECRET, HERALD_RATE_LIMIT_PER_MINUTE: '1' })
  const bearer = (value: string): Record<string, string> => ({ authorization: `Bearer ${value}` })
  const ada = token({ subject: 'ada', publish: ['*'] })
  assert.equal((await publish(url, { topic: 'a', data: 1 })).status, 401)
  assert.equal((await publish(url, { topic: 'a', data: 1 }, bearer(token({ subject: 'bob', publish: ['other'] })))).status, 403)
  assert.equal((await publish(url, { topic: 'a', data: 1 }, bearer(ada))).status, 202)
  assert.equal((await publish(url, { topic: 'a', data: 1 }, bearer(ada))).status, 429)
  const metrics = await scrape(app)
  assert.equal(metrics.value('herald_auth_failures_total', { status: '401' }), 1)
  assert.equal(metrics.value('herald_auth_failures_total', { status: '403' }), 1)
  assert.equal(metrics.value('herald_rate_limited_total'), 1)
  assert.equal(metrics.value('herald_events_published_total', { result: 'refused' }), 3)
  for (const reason of ['unauthenticated', 'forbidden', 'rate-limited']) assert.equal(metrics.value('herald_publish_refusals_total', { reason }), 1, reason)
  assert.equal(metrics.value('herald_publish_refusals_total', { reason: 'invalid' }), 0)
  assert.doesNotMatch(metrics.text, /ada|bob|topic=/, 'no label holds a subject or a topic')
})

test('Redis dropping the subscriber connection is logged and counted; it comes back and redis_up says so', { timeout: 60_000 }, async (t) => {
  const redis = await RedisServer.start()
  t.after(async () => await redis.stop())
  const { app, url, log } = await build(t, { REDIS_URL: redis.url, LOG_LEVEL: 'info' })
  const stream = await openStream(`${url}/v1/stream?topic=drop`)
  t.after(() => stream.close())
  const admin = new Redis(redis.url)
  t.after(() => admin.disconnect())
  // What Redis does when a subscriber passes its `client-output-buffer-limit pubsub`: it closes the connection.
  await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub')
  await until(async () => (await scrape(app)).value('herald_redis_subscriber_drops_total') === 1, 10_000, 'the drop to be counted')
  assert.ok(log.some((line) => line.level === 40 && /closed the subscriber connection|connection lost/.test(String(line.msg))), 'a warning names the drop')
  await until(async () => (await scrape(app)).value('herald_redis_reconnects_total') === 1, 10_000, 'the reconnect to be counted')
  await until(async () => (await scrape(app)).value('herald_redis_up') === 1, 10_000, 'redis_up to say 1 again')
  // And delivery resumed.
  const published = await publish(url, { topic: 'drop', data: 'after' })
  await until(() => stream.events.some((event) => event.id === published.body.id), 5_000, 'the event after the drop')
})

test('the metrics listener serves only /metrics, and the public port does not serve it', async (t) => {
  const { app, url } = await build(t)
  const port = app.metrics.address()?.port
  assert.ok(port !== undefined && port !== 0)
  assert.equal((await fetch(`http://127.0.0.1:${port}/other`)).status, 404)
  assert.equal((await fetch(`${url}/metrics`)).status, 404)
  const off = await build(t, { HERALD_METRICS_PORT: 'off' })
  assert.equal(off.app.metrics.address(), undefined)
})

test('after real traffic the whole scrape passes promtool check metrics, with replays, refusals by reason and build info', { timeout: 60_000 }, async (t) => {
  const probe = spawnSync('promtool', ['--version'])
  if (probe.error !== undefined) {
    t.skip('promtool is not installed: apt-get install -y prometheus (.ci/run does it for you)')
    return
  }
  const redis = await RedisServer.start()
  t.after(async () => await redis.stop())
  const { app, url } = await build(t, { REDIS_URL: redis.url, HERALD_JWT_SECRET: SECRET, HERALD_MAX_BODY_BYTES: '1024' })
  const publisher = { authorization: `Bearer ${token({ publish: ['r'] })}` }
  const ids: string[] = []
  for (let index = 0; index < 30; index++) ids.push((await publish(url, { topic: 'r', data: index }, publisher)).body.id as string)
  assert.equal((await publish(url, { topic: 'r', data: 'x'.repeat(2000) }, publisher)).status, 413)
  assert.equal((await publish(url, 'not json', { ...publisher, 'content-type': 'text/plain' })).status, 415)
  assert.equal((await publish(url, { topic: 'r', data: 1 }, { authorization: 'Bearer nonsense' })).status, 401)

  // Three clients come back at once: each replays the 29 events after the first.
  const resumed = await Promise.all([0, 1, 2].map(async () => await openStream(`${url}/v1/stream?topic=r&lastEventId=${ids[0] as string}`)))
  t.after(() => { for (const stream of resumed) stream.close() })
  for (const stream of resumed) await stream.waitForEvents(29)
  const fresh = await openStream(`${url}/v1/stream?topic=r`)
  t.after(() => fresh.close())
  const live = await publish(url, { topic: 'r', data: 'live' }, publisher)
  await until(() => fresh.events.some((event) => event.id === live.body.id), 5_000, 'the live event')

  const metrics = await scrape(app)
  assert.equal(metrics.value('herald_build_info', { version: '0.1.0', node: process.version }), 1)
  for (const [reason, count] of [['too-large', 1], ['not-json', 1], ['unauthenticated', 1], ['invalid', 0], ['unavailable', 0]] as const) {
    assert.equal(metrics.value('herald_publish_refusals_total', { reason }), count, reason)
  }
  assert.equal(metrics.value('herald_replays_started_total', { kind: 'resume' }), 3)
  assert.equal(metrics.value('herald_replays_finished_total', { kind: 'resume', result: 'done' }), 3)
  assert.equal(metrics.value('herald_replay_duration_seconds_count', { kind: 'resume' }), 3)
  assert.equal(metrics.value('herald_replays_started_total', { kind: 'new' }), 1)
  // Each replay's read (and the new stream's) took a slot, waited for or not.
  assert.ok((metrics.value('herald_replay_slot_wait_seconds_count') ?? 0) >= 4, 'slot waits observed')
  assert.equal(metrics.value('nodejs_active_handles_total'), undefined, 'the gauge misnamed as a counter is gone')
  assert.ok(metrics.text.includes('nodejs_active_handles{'), 'its figures by type stay')

  const check = spawnSync('promtool', ['check', 'metrics'], { input: metrics.text, encoding: 'utf8' })
  assert.equal(check.status, 0, `promtool check metrics: ${check.stdout}${check.stderr}`)
})
