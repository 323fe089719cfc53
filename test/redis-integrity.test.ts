import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import fc from 'fast-check'
import { parseChannelMessage, parseHistoryEntry } from '../src/transport/redis-messages.js'
import { build, publish, request, until } from './helper.js'
import { epochOf, seq } from './helpers/event-ids.js'
import { scrape } from './helpers/metrics.js'
import { RedisServer } from './helpers/redis-server.js'
import { openStream, payloads } from './helpers/sse-client.js'

/** Runs redis-cli against a server, with `input` on stdin for its -x argument. */
function redisCli (redis: RedisServer, args: string[], input?: Buffer): string {
  const result = spawnSync('redis-cli', ['-p', String(redis.port), ...args], { input, timeout: 10_000 })
  if (result.status !== 0) throw new Error(`redis-cli ${args.join(' ')}: ${result.stderr.toString()}`)
  return result.stdout.toString()
}

test('what arrives from Redis is checked: no channel message or history entry of any shape throws', () => {
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (message) => {
    const parsed = parseChannelMessage(message)
    assert.ok(typeof parsed === 'string' || (Number.isSafeInteger(parsed.seq) && !/[\r\n\0]/.test(parsed.type ?? '')))
  }))
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 80 }), (tail) => {
    const parsed = parseChannelMessage(`herald1\nabc\n1\n2\n${tail}`)
    assert.ok(typeof parsed === 'string' || !/[\r\n\0]/.test(parsed.type ?? ''), 'a type with a line break never passes')
  }))
  fc.assert(fc.property(fc.anything(), (entry) => { parseHistoryEntry('e1', entry) }))
  assert.equal(parseChannelMessage('herald1\nabc\n1\n2\nbad\rtype\n\n\n{}'), 'bad type')
})

test('messages another Redis client publishes on a Herald channel are dropped, counted and logged once; instances keep serving', { timeout: 90_000 }, async (t) => {
  const redis = await RedisServer.start()
  t.after(async () => await redis.stop())
  const env = { REDIS_URL: redis.url, LOG_LEVEL: 'warn' }
  const one = await build(t, env)
  const two = await build(t, env)
  const streams = await Promise.all([one, two].map(async ({ url }) => await openStream(`${url}/v1/stream?topic=chat`)))
  for (const stream of streams) t.after(stream.close)
  const admin = redis.client()
  t.after(() => admin.disconnect())
  await until(async () => Number((await admin.pubsub('SHARDNUMSUB', 'herald:{chat}') as [string, number])[1]) === 2, 10_000, 'both instances subscribed')
  const first = await publish(one.url, { topic: 'chat', data: { n: 1 } })
  await Promise.all(streams.map(async (stream) => await stream.waitForEvents(1)))

  const shapes: Array<[string, Buffer]> = [
    ['plain text', Buffer.from('hello')],
    ['empty', Buffer.alloc(0)],
    ['only newlines', Buffer.from('\n\n\n\n\n\n\n\n')],
    ['a wrong id', Buffer.from('herald1\nNOT-AN-EPOCH\n-3\n1700000000000\n\n\n\n{}')],
    ['a non-numeric time', Buffer.from(`herald1\n${epochOf(first.body.id)}\n99\nyesterday\n\n\n\n{}`)],
    ['a line break in the type', Buffer.from(`herald1\n${epochOf(first.body.id)}\n99\n1700000000000\nevil\rdata: x\n\n\n{}`)],
    ['70 KB of junk', randomBytes(70_000)],
    ['binary', Buffer.from([0, 255, 10, 13, 0, 1, 2, 200, 10, 10, 10, 10, 10, 10, 10, 10])]
  ]
  for (const [, body] of shapes) {
    // Sharded pub/sub is what Herald listens on; a plain PUBLISH on the same name must not matter either.
    redisCli(redis, ['-x', 'SPUBLISH', 'herald:{chat}'], body)
    redisCli(redis, ['-x', 'PUBLISH', 'herald:{chat}'], body)
  }
  const second = await publish(two.url, { topic: 'chat', data: { n: 2 } })
  assert.equal(second.status, 202)
  for (const stream of streams) {
    const events = await stream.waitForEvents(2)
    assert.deepEqual(payloads(events), [{ n: 1 }, { n: 2 }], 'streams never see what Herald did not write')
  }
  for (const herald of [one, two]) {
    assert.equal((await request(`${herald.url}/health/ready`)).status, 200)
    const metrics = await scrape(herald.app)
    assert.equal(metrics.value('herald_redis_foreign_messages_total'), shapes.length)
    const lines = herald.log.filter((line) => String(line.msg).startsWith('dropped a message on a Herald channel'))
    assert.equal(lines.length, 1, 'logged once, not once per message')
    t.diagnostic(`${String(lines[0]?.problem)}; ${shapes.length} dropped`)
  }
})

test('Redis losing acknowledged writes (AOF everysec, SIGKILL) starts a new epoch: an id never means two events', { timeout: 120_000 }, async (t) => {
  const redis = await RedisServer.start({ appendOnly: true, appendFsync: 'everysec' })
  t.after(async () => await redis.stop())
  const herald = await build(t, { REDIS_URL: redis.url })
  const app = herald.app
  // Every acknowledged (202) id, and the data it was acknowledged for.
  const acknowledged = new Map<string, unknown>()
  const burst = async (label: string, count: number): Promise<void> => {
    await Promise.all(Array.from({ length: count }, async (_, index) => {
      const data = { label, index }
      const reply = await publish(herald.url, { topic: 'ledger', data })
      if (reply.status === 202) acknowledged.set(reply.body.id, data)
    }))
  }
  let rounds = 0
  let lostAcknowledged = 0
  for (const delayMs of [0, 6, 12]) {
    await burst(`before-${delayMs}`, 30)
    const epochBefore = epochOf([...acknowledged.keys()].at(-1) as string)
    // Bursts in flight while Redis dies: acknowledged in the last moments, maybe never written to the AOF.
    const inFlight = burst(`dying-${delayMs}`, 30)
    await new Promise((resolve) => setTimeout(resolve, delayMs))
    await redis.kill()
    await inFlight
    await redis.startProcess()
    // What the reloaded AOF kept of the epoch that was current at the crash.
    const admin = redis.client()
    const [epochKept, seqKept] = await admin.hmget('herald:{ledger}:m', 'e', 's')
    admin.disconnect()
    const acknowledgedSeqs = [...acknowledged.keys()].filter((id) => epochOf(id) === epochKept).map(seq)
    lostAcknowledged += Math.max(0, Math.max(0, ...acknowledgedSeqs) - Number(seqKept ?? 0))
    await until(async () => (await request(`${herald.url}/health/ready`)).status === 200, 20_000, 'Herald ready again')
    await burst(`after-${delayMs}`, 30)
    const epochAfter = epochOf([...acknowledged.keys()].at(-1) as string)
    assert.notEqual(epochAfter, epochBefore, 'a Redis restart starts a new epoch')
    rounds++
  }
  t.diagnostic(`${rounds} SIGKILLs, ${acknowledged.size} acknowledged publishes, ${lostAcknowledged} of them lost by Redis (their ids never reused)`)

  // Readers from before each crash, and from 0: whatever id they see must carry the data it was acknowledged with.
  const resumePoints = ['0', ...[...acknowledged.keys()].filter((_, index) => index % 17 === 0)]
  for (const lastEventId of resumePoints) {
    const stream = await openStream(`${herald.url}/v1/stream?topic=ledger&lastEventId=${lastEventId}`)
    await until(() => app.hub.listenerCount('ledger') === 1 && app.hub.health().status === 'ok', 10_000, 'the stream to be listening')
    const marker = await publish(herald.url, { topic: 'ledger', data: { label: 'marker', from: lastEventId } })
    assert.equal(marker.status, 202, JSON.stringify(marker.body))
    acknowledged.set(marker.body.id, { label: 'marker', from: lastEventId })
    await until(() => stream.events.some((event) => event.id === marker.body.id), 10_000, `the marker ${String(marker.body.id)} after resuming from ${lastEventId}`)
    for (const event of stream.events) {
      if (event.event === 'herald.reset') continue
      assert.ok(acknowledged.has(event.id), `id ${event.id} was never acknowledged`)
      assert.deepEqual(JSON.parse(event.data), acknowledged.get(event.id), `id ${event.id} carries the data it was acknowledged with`)
    }
    stream.close()
  }
})

test('a restart from a snapshot older than the acknowledged writes starts a new epoch: the lost ids are never handed out again', { timeout: 60_000 }, async (t) => {
  const redis = await RedisServer.start()
  t.after(async () => await redis.stop())
  const herald = await build(t, { REDIS_URL: redis.url })
  const acknowledged = new Map<string, unknown>()
  const publishAll = async (label: string): Promise<void> => {
    for (let index = 0; index < 10; index++) {
      const reply = await publish(herald.url, { topic: 'ledger', data: { label, index } })
      assert.equal(reply.status, 202)
      acknowledged.set(reply.body.id, { label, index })
    }
  }
  await publishAll('saved')
  const admin = redis.client()
  await admin.save()
  admin.disconnect()
  // Acknowledged, then lost: Redis comes back from the snapshot taken before them.
  await publishAll('lost')
  const beforeCrash = new Map(acknowledged)
  const reader = await openStream(`${herald.url}/v1/stream?topic=ledger&lastEventId=${[...acknowledged.keys()][14] as string}`)
  t.after(reader.close)
  await until(() => reader.events.length >= 5, 10_000, 'the reader to catch up before the crash')
  await redis.kill()
  await redis.startProcess()
  const check = redis.client()
  const [, seqKept] = await check.hmget('herald:{ledger}:m', 'e', 's')
  check.disconnect()
  assert.equal(Number(seqKept), 10, 'Redis came back without the 10 acknowledged writes after the snapshot')
  await until(async () => (await request(`${herald.url}/health/ready`)).status === 200, 20_000, 'Herald ready again')
  await publishAll('after')
  const afterIds = [...acknowledged.keys()].filter((id) => !beforeCrash.has(id))
  assert.equal(afterIds.length, 10)
  for (const id of afterIds) assert.ok(!beforeCrash.has(id), `id ${id} handed out twice`)
  assert.notEqual(epochOf(afterIds[0] as string), epochOf([...beforeCrash.keys()][0] as string), 'a new epoch')
  // The stream that was open across the crash, and a client resuming from a lost id: every id means one event.
  const resumed = await openStream(`${herald.url}/v1/stream?topic=ledger&lastEventId=${[...beforeCrash.keys()][17] as string}`)
  t.after(resumed.close)
  await until(() => resumed.events.some((event) => event.event === 'herald.reset'), 10_000, 'the resumed client\'s reset')
  const marker = await publish(herald.url, { topic: 'ledger', data: { label: 'marker' } })
  acknowledged.set(marker.body.id, { label: 'marker' })
  const last = marker.body.id as string
  for (const client of [reader, resumed]) {
    await until(() => client.events.some((event) => event.id === last), 10_000, 'the events after the crash')
    assert.ok(client.events.some((event) => event.event === 'herald.reset'), 'a reset, not another event under an id the client knows')
    for (const event of client.events) {
      if (event.event === 'herald.reset') continue
      assert.deepEqual(JSON.parse(event.data), acknowledged.get(event.id), `id ${event.id} carries the data it was acknowledged with`)
    }
  }
  t.diagnostic(`10 acknowledged writes lost by the restart; the next 10 publishes took ids ${afterIds[0] as string}…${afterIds.at(-1) as string}`)
})
