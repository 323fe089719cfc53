import assert from 'node:assert/strict'
import { test } from 'node:test'
import { build, publish, until } from './helper.js'
import { HeraldProcess } from './helpers/herald-process.js'
import { epochOf } from './helpers/event-ids.js'
import { RedisServer } from './helpers/redis-server.js'
import { ResumingClient, tally } from './helpers/resuming-client.js'
import { openStream } from './helpers/sse-client.js'

const sleep = async (ms: number) => await new Promise((resolve) => setTimeout(resolve, ms))

/** Redis's own count of subscribers to a topic's channel (default prefix): the SSUBSCRIBE took effect. */
async function numsub (redis: RedisServer, topic: string): Promise<number> {
  const admin = redis.client()
  try {
    return Number((await admin.pubsub('SHARDNUMSUB', `herald:{${topic}}`) as [string, number])[1])
  } finally {
    admin.disconnect()
  }
}

/** Publishes to the given instances in turn until stopped, keeping what was accepted and what failed. */
function publishLoop (urls: string[], topic: string) {
  const accepted: string[] = []
  const statuses = new Map<number, number>()
  let ambiguous = 0
  const state = { running: true }
  const done = (async () => {
    for (let seq = 0; state.running; seq++) {
      try {
        const reply = await publish(urls[seq % urls.length] as string, { topic, data: { seq } })
        statuses.set(reply.status, (statuses.get(reply.status) ?? 0) + 1)
        if (reply.status === 202) accepted.push(reply.body.id as string)
        // A 503 promises nothing was stored, but a reply lost with the connection may hide a stored event.
        else if (reply.status === 503) ambiguous++
        else throw new Error(`unexpected status ${reply.status}`)
      } catch (error) {
        if ((error as Error).message.startsWith('unexpected status')) throw error
        ambiguous++
      }
      await sleep(5)
    }
  })()
  return { accepted, statuses, ambiguous: () => ambiguous, stop: async () => { state.running = false; await done } }
}

test('Redis killed mid-stream and restarted: 503 meanwhile, streams stay up, 0 lost, 0 duplicated; the new epoch is announced', { timeout: 60_000 }, async (t) => {
  const redis = await RedisServer.start({ appendOnly: true })
  t.after(async () => await redis.stop())
  const env = { REDIS_URL: redis.url, HERALD_HEARTBEAT_MS: '100', LOG_LEVEL: process.env.DEBUG_LOG ?? 'silent' }
  const a = await build(t, env)
  const b = await build(t, env)
  const clients = [a, a, a, b, b, b].map((instance) => new ResumingClient([instance.url], '/v1/stream?topic=fault'))
  for (const client of clients) client.start()
  t.after(() => { for (const client of clients) client.stop() })
  await until(() => a.app.hub.streamCount === 3 && b.app.hub.streamCount === 3, 5_000, 'streams open')
  await until(async () => await numsub(redis, 'fault') === 2, 5_000, 'A and B subscribed in Redis')

  const loop = publishLoop([a.url, b.url], 'fault')
  await until(() => loop.accepted.length >= 20, 5_000, 'publishing')
  const beforeOutage = [...(clients[0]?.ids ?? [])]
  await redis.kill()
  await until(() => (loop.statuses.get(503) ?? 0) >= 3, 5_000, '503 while Redis is down')
  const health = await (await fetch(`${a.url}/health`)).json() as { status: string }
  assert.equal(health.status, 'degraded')
  // Time for streams to be dropped, which should not happen, during the outage.
  await sleep(500)
  assert.equal(a.app.hub.streamCount, 3, 'streams stay open during the outage')

  await redis.startProcess()
  await until(async () => ((await (await fetch(`${a.url}/health`)).json()) as { status: string }).status === 'ok', 10_000, 'healthy again')
  const acceptedAtRestart = loop.accepted.length
  await until(() => loop.accepted.length >= acceptedAtRestart + 20, 10_000, 'publishing after restart')
  await loop.stop()

  const accepted = loop.accepted
  await until(() => clients.every((client) => client.ids.length >= accepted.length), 10_000, 'clients to catch up')
  for (const client of clients) {
    const counts = tally(client.ids, accepted)
    t.diagnostic(`client: received ${client.ids.length} of ${accepted.length} accepted, ${JSON.stringify(counts)}, connections ${client.connections}`)
    assert.deepEqual([counts.lost, counts.duplicated, counts.outOfOrder], [0, 0, 0])
    assert.ok(counts.unexpected <= loop.ambiguous(), 'only publishes with an unknown outcome may add events')
    assert.equal(client.connections, 1, 'the stream stayed connected through the outage')
    // A restarted Redis did not write the topic's state itself: its ids start a new epoch, and an open stream is
    // told so (the whole new epoch follows, so nothing is lost).
    const firstNew = client.ids.findIndex((id) => epochOf(id) !== epochOf(client.ids[0] as string))
    assert.ok(firstNew > 0, 'ids of a new epoch after the restart')
    assert.deepEqual(client.resets.filter((reset) => reset.reason === 'epoch-changed').map((reset) => reset.afterEvents), [firstNew], 'one epoch-changed notice, right before the new epoch')
  }
  t.diagnostic(`publishes: ${JSON.stringify(Object.fromEntries(loop.statuses))}, ambiguous ${loop.ambiguous()}`)

  // A client that left before the outage resumes from an id of the old epoch: it is told, before anything else.
  const lastSeen = beforeOutage.at(-1) ?? '0'
  const late = await openStream(`${b.url}/v1/stream?topic=fault`, { 'last-event-id': lastSeen })
  t.after(late.close)
  const [reset] = await late.waitForEvents(1)
  assert.equal(reset?.event, 'herald.reset')
  assert.deepEqual(JSON.parse(reset?.data ?? ''), { reason: 'epoch-changed', topics: ['fault'], lastEventId: lastSeen })
  // A client that left after the restart resumes within the new epoch and gets exactly the accepted rest.
  const newEpoch = epochOf(accepted.at(-1) as string)
  const resumeFrom = accepted.find((id) => epochOf(id) === newEpoch) as string
  const later = await openStream(`${b.url}/v1/stream?topic=fault`, { 'last-event-id': resumeFrom })
  t.after(later.close)
  const expected = accepted.slice(accepted.indexOf(resumeFrom) + 1)
  const events = await later.waitForEvents(expected.length)
  const counts = tally(events.map((event) => event.id), expected)
  assert.deepEqual(counts, { lost: 0, duplicated: 0, outOfOrder: 0, unexpected: 0 })
})

test('an instance killed with SIGKILL: its clients resume on another with 0 lost, 0 duplicated', { timeout: 60_000 }, async (t) => {
  const redis = await RedisServer.start()
  t.after(async () => await redis.stop())
  const env = { REDIS_URL: redis.url }
  const a = await HeraldProcess.start(env)
  const b = await HeraldProcess.start(env)
  t.after(async () => { await a.kill(); await b.kill('SIGTERM') })
  const clients = Array.from({ length: 5 }, () => new ResumingClient([a.url, b.url], '/v1/stream?topic=crash'))
  for (const client of clients) client.start()
  t.after(() => { for (const client of clients) client.stop() })
  await until(() => clients.every((client) => client.connections === 1), 5_000, 'connected to A')
  await until(async () => await numsub(redis, 'crash') === 1, 5_000, 'A subscribed in Redis')

  const loop = publishLoop([b.url], 'crash')
  await until(() => loop.accepted.length >= 30, 5_000, 'publishing')
  for (const client of clients) client.failOverTo(1)
  await a.kill('SIGKILL')
  const acceptedAtKill = loop.accepted.length
  await until(() => loop.accepted.length >= acceptedAtKill + 30, 5_000, 'publishing after the kill')
  await loop.stop()

  const accepted = loop.accepted
  await until(() => clients.every((client) => client.ids.length >= accepted.length), 10_000, 'clients to catch up')
  for (const client of clients) {
    const counts = tally(client.ids, accepted)
    t.diagnostic(`client: received ${client.ids.length} of ${accepted.length}, ${JSON.stringify(counts)}, connections ${client.connections}`)
    assert.deepEqual(counts, { lost: 0, duplicated: 0, outOfOrder: 0, unexpected: 0 })
    assert.equal(client.connections, 2, 'one reconnect, to B')
  }
})

test('events published while the subscriber connection reconnects are replayed from history', { timeout: 60_000 }, async (t) => {
  const redis = await RedisServer.start()
  t.after(async () => await redis.stop())
  const a = await build(t, { REDIS_URL: redis.url })
  const client = await openStream(`${a.url}/v1/stream?topic=gap`)
  t.after(client.close)
  await until(async () => await numsub(redis, 'gap') === 1 && a.app.hub.health().status === 'ok', 5_000, 'subscribed in Redis')
  const admin = redis.client()
  t.after(() => admin.disconnect())
  const before = await publish(a.url, { topic: 'gap', data: 'before' })
  await client.waitForEvents(1)

  // Drop only the pub/sub connection: live delivery stops until ioredis reconnects, publishing goes on.
  await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub')
  const during = []
  for (let index = 0; index < 10; index++) during.push((await publish(a.url, { topic: 'gap', data: index })).body.id)
  const after = await publish(a.url, { topic: 'gap', data: 'after' })
  const events = await client.waitForEvents(12)
  assert.deepEqual(events.map((event) => event.id), [before.body.id, ...during, after.body.id])
})
