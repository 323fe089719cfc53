// A topic's history as a resuming client meets it, on memory, Redis and a Redis Cluster: it lives a retention after
// the topic's LAST event (a busy topic never loses its history under a client), and a replay page always carries its
// first event, however big (a page's byte budget never skips an event). Each failure here was once a silent loss.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Cluster, Redis } from 'ioredis'
import { build, publish } from './helper.js'
import { ALL_BROKERS, brokerEnvironment } from './helpers/brokers.js'
import { scanKeys } from './helpers/redis-keys.js'
import { openStream, type StreamClient } from './helpers/sse-client.js'

const sleep = async (ms: number) => await new Promise((resolve) => setTimeout(resolve, ms))

const brokers = brokerEnvironment('history', { cluster: true })

/**
 * The Redis stream that holds a topic's history: found by type and name rather than spelled out, so the check
 * holds whatever the key layout (`<prefix>history:<topic>`, `<prefix>{<topic>}:…`).
 */
async function historyKey (admin: Redis | Cluster, prefix: string, topic: string): Promise<string> {
  const found: string[] = []
  for (const key of await scanKeys(admin, `${prefix}*`)) if (key.includes(topic) && await admin.type(key) === 'stream') found.push(key)
  assert.equal(found.length, 1, `one Redis stream holds topic ${topic}'s history under ${prefix}: found ${JSON.stringify(found)}`)
  return found[0] as string
}

/** Waits (bounded) until a client has an event with id `last`, a reset, or its end; never throws. */
async function settle (client: StreamClient, last: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline && !client.ended() && !client.events.some((event) => event.id === last || event.event === 'herald.reset')) await sleep(20)
}

const RETENTION_MS = 2_000

for (const broker of ALL_BROKERS) {
  test(`${broker}: a busy topic's history lives a retention after its LAST event: a resume gets every event after its position, or a herald.reset, never a silent gap`, { timeout: 60_000 }, async (t) => {
    const { env, prefix } = brokers.env(broker)
    const { url } = await build(t, { ...env, HERALD_HISTORY_RETENTION_MS: String(RETENTION_MS) })
    const topic = 'busy'
    const ids: string[] = []
    // Redis: the history's expiry right after each publish, which every publish must push back to a retention.
    const ttls: number[] = []
    let key: string | undefined
    const started = performance.now()
    // Over 1.6 retentions: a history that expired a retention after its FIRST event has lost the events before
    // that moment, while positions among them are still younger than a retention (no sign of expiry in them).
    while (performance.now() - started < 1.6 * RETENTION_MS) {
      const reply = await publish(url, { topic, data: { n: ids.length } })
      assert.equal(reply.status, 202)
      ids.push(reply.body.id as string)
      if (broker !== 'memory') {
        const admin = brokers.adminOf(broker)
        key ??= await historyKey(admin, prefix, topic)
        ttls.push(await admin.pttl(key))
      }
      await sleep(RETENTION_MS / 10)
    }
    const last = ids.at(-1) as string
    if (broker !== 'memory') {
      t.diagnostic(`PTTL of ${String(key)} right after each of ${ids.length} publishes over ${(1.6 * RETENTION_MS).toFixed(0)} ms (retention ${RETENTION_MS} ms): ${ttls.join(', ')}`)
      // Far above any publish-to-PTTL delay, far below what an expiry set only by the first event leaves.
      const floor = RETENTION_MS / 2
      assert.deepEqual(ttls.filter((ttl) => ttl < floor), [],
        `every publish refreshes the history's expiry to the retention (${RETENTION_MS} ms): PTTLs right after publishes, in order: ${ttls.join(', ')} (-2: the key was gone)`)
    }

    const resumedAt = performance.now()
    const positions = ids.slice(0, -1)
    const clients = await Promise.all(positions.map(async (id) => await openStream(`${url}/v1/stream?topic=${topic}`, { 'last-event-id': id })))
    t.after(() => { for (const client of clients) client.close() })
    await Promise.all(clients.map(async (client) => await settle(client, last)))
    const gaps: string[] = []
    for (const [index, client] of clients.entries()) {
      if (client.events[0]?.event === 'herald.reset') continue
      const expected = ids.slice(index + 1)
      const got = client.events.map((event) => event.id)
      if (JSON.stringify(got) !== JSON.stringify(expected)) {
        const missing = expected.filter((id) => !got.includes(id))
        gaps.push(`from ${positions[index] as string} (event ${index} of ${ids.length}): ${got.length} of ${expected.length} events, missing ${missing.join(' ')}, and no herald.reset`)
      }
    }
    const resets = clients.filter((client) => client.events[0]?.event === 'herald.reset').length
    t.diagnostic(`${ids.length} events over ${(resumedAt - started).toFixed(0)} ms; resumes from each of the first ${positions.length}: ${resets} began with herald.reset, ${positions.length - resets - gaps.length} got every event after their position`)
    assert.deepEqual(gaps, [], 'a resume lost events silently: the topic\'s history expired under it though the topic was published to all along')
  })

  test(`${broker}: an event bigger than a replay page's byte budget (1 MiB or the queue cap, shared by the stream's topics) is replayed, not skipped`, { timeout: 30_000 }, async (t) => {
    const { env } = brokers.env(broker)
    const { url } = await build(t, env)
    // 32 topics: each gets 1 MiB / 32 = 32 KiB of a page. The big event is 40 KB of data, on one of them.
    const topics = Array.from({ length: 32 }, (_, index) => `wide/${index}`)
    const seen = await publish(url, { topic: 'wide/0', data: 'small, seen' })
    const big = await publish(url, { topic: 'wide/0', data: 'x'.repeat(40_000) })
    const next = await publish(url, { topic: 'wide/0', data: 'small, after the big one' })
    for (const reply of [seen, big, next]) assert.equal(reply.status, 202)
    const client = await openStream(`${url}/v1/stream?${topics.map((topic) => `topic=${encodeURIComponent(topic)}`).join('&')}`, { 'last-event-id': seen.body.id })
    t.after(client.close)
    // A multi-topic stream's ids carry every topic's position: the events are told apart by their data.
    const deadline = Date.now() + 5_000
    while (Date.now() < deadline && !client.ended() && !client.events.some((event) => event.data === '"small, after the big one"' || event.event === 'herald.reset')) await sleep(20)
    const got = client.events.map((event) => event.event === 'herald.reset' ? 'herald.reset' : `${event.data.length} bytes`)
    assert.deepEqual(got, ['40002 bytes', '26 bytes'],
      'the resume gets the 40 KB event, bigger than a page\'s 32 KiB per topic, and the one after it, in order')
  })
}
