/**
 * Guarantee 5a: Redis losing its data loses nothing silently. Redis runs without AOF here and is restarted EMPTY
 * under open streams and reconnecting clients: every client gets every event, or a herald.reset first.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { build, publishMany, until } from './helper.js'
import { judgeAcrossEpochs } from './helpers/epoch-verdict.js'
import { epochOf, seq } from './helpers/event-ids.js'
import { RedisProxy } from './helpers/redis-proxy.js'
import { RedisServer } from './helpers/redis-server.js'
import { openStream } from './helpers/sse-client.js'

test('Redis restarted EMPTY under open streams and reconnecting clients: every event, or herald.reset first', { timeout: 60_000 }, async (t) => {
  const redis = await RedisServer.start()
  t.after(async () => await redis.stop())
  // A reaches Redis through a proxy, to hold its subscriber's reconnect until the new counter passed the old
  // position; B reconnects at once and sees the new epoch start live.
  const proxy = await RedisProxy.start(redis.port)
  t.after(async () => await proxy.close())
  const a = await build(t, { REDIS_URL: proxy.url, HERALD_HEARTBEAT_MS: '100' })
  const b = await build(t, { REDIS_URL: redis.url, HERALD_HEARTBEAT_MS: '100' })
  const healthy = async (url: string) => ((await (await fetch(`${url}/health`)).json()) as { status: string }).status === 'ok'
  const open = [await openStream(`${a.url}/v1/stream?topic=e`), await openStream(`${b.url}/v1/stream?topic=e`)]
  for (const client of open) t.after(client.close)
  await until(() => a.app.hub.health().status === 'ok' && b.app.hub.health().status === 'ok', 5_000, 'subscribed')
  const old = await publishMany(a.url, 'e', 50)
  for (const client of open) await client.waitForEvents(50)
  const oldPosition = old.at(-1) as string

  proxy.pause('subscriber', 'toRedis')
  await redis.kill()
  await redis.startProcess()
  await until(async () => await healthy(b.url), 10_000, 'B healthy again')
  // The new counter starts again at 1 and passes the old position: 70 events, 50 of them at or below it.
  const fresh = await publishMany(b.url, 'e', 70)
  proxy.resume('subscriber', 'toRedis')
  await until(async () => await healthy(a.url), 10_000, 'A healthy again')
  assert.notEqual(epochOf(fresh[0] as string), epochOf(oldPosition), 'a new epoch')
  assert.equal(seq(fresh[0] as string), 1)

  // Clients that left before the restart come back with their old id once the new counter passed it.
  const back = [
    await openStream(`${a.url}/v1/stream?topic=e`, { 'last-event-id': oldPosition }),
    await openStream(`${b.url}/v1/stream?topic=e&lastEventId=${old[20] as string}`)
  ]
  for (const client of back) t.after(client.close)
  await until(() => back.every((client) => client.events.length >= 1), 5_000, 'the reconnected clients to hear')
  const live = await publishMany(a.url, 'e', 5)

  for (const client of open) {
    await until(() => client.events.some((event) => event.id === live.at(-1)), 5_000, 'the open stream to catch up').catch(() => {})
    const verdict = judgeAcrossEpochs(client.events, old, [...fresh, ...live])
    t.diagnostic(`open stream: ${JSON.stringify(verdict)}`)
    assert.ok(verdict.inOrder, 'new-epoch events in order, each once')
    assert.equal(client.ended(), false, 'the stream stayed open')
    assert.deepEqual([verdict.silentlyLost, verdict.resetFirst, verdict.oldReceived], [0, true, 50])
    // A live stream gets the new epoch from its start: nothing of it is missed.
    assert.equal(verdict.newReceived, fresh.length + live.length)
  }
  for (const client of back) {
    await until(() => client.events.some((event) => event.id === live.at(-1)), 5_000, 'the reconnected stream to go live').catch(() => {})
    const verdict = judgeAcrossEpochs(client.events, [], [...fresh, ...live])
    t.diagnostic(`reconnected client: ${JSON.stringify(verdict)}, first event ${JSON.stringify(client.events[0])}`)
    assert.ok(verdict.inOrder, 'new-epoch events in order, each once')
    assert.equal(client.events[0]?.event, 'herald.reset')
    assert.deepEqual(JSON.parse(client.events[0]?.data ?? '{}').reason, 'epoch-changed')
    assert.equal(verdict.silentlyLost, 0)
    // It continues from the new epoch's head: the live events, each once.
    assert.deepEqual(client.events.slice(1).map((event) => event.id), live)
  }
})
