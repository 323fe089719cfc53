import type { Redis } from 'ioredis'
import { setTimeout as sleep } from 'node:timers/promises'
import { until } from '../../test/helper.js'
import { HttpPublisher } from '../http-publisher.js'
import type { Finding } from './lab.js'

const TOPICS = 10_000
const KEYS = 10_000
/** The event measured, as in bench/redis-memory.ts: a small chat message. */
const DATA = { user: 'ada', text: 'hello there' }

/** POSTs every body (pipelined, 200 at a time); any answer but 202 throws. */
async function publishAll (publisher: HttpPublisher, bodies: (index: number) => string, count: number): Promise<void> {
  for (let index = 0; index < count; index += 200) {
    const statuses = await Promise.all(Array.from({ length: Math.min(200, count - index) }, async (_, offset) => await publisher.post('/v1/events', bodies(index + offset))))
    const bad = statuses.find((status) => status !== 202)
    if (bad !== undefined) throw new Error(`a publish answered ${bad}`)
  }
}

async function usedMemory (admin: Redis): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await admin.info('memory'))?.[1])
}

interface KeyTtls {
  keys: number
  withoutTtl: string[]
  /** Per kind of key (m: a topic's state, h: its history, i: an idempotency record): how many, and the shortest and
   * longest time left in seconds. */
  kinds: Map<string, { count: number, minS: number, maxS: number }>
}

/** Every key under `prefix` with its PTTL (-1: no expiry). */
async function keyTtls (admin: Redis, prefix: string): Promise<KeyTtls> {
  const result: KeyTtls = { keys: 0, withoutTtl: [], kinds: new Map() }
  let cursor = '0'
  do {
    const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    cursor = next
    const ttls = await Promise.all(keys.map(async (key) => await admin.pttl(key)))
    for (const [index, key] of keys.entries()) {
      const ttl = ttls[index] as number
      if (ttl === -2) continue
      result.keys++
      if (ttl === -1) result.withoutTtl.push(key)
      // <prefix>{<topic>}:<kind>[:<idempotency key>]; a topic name may hold ':' but not '}'.
      const kind = key.slice(key.indexOf('}') + 2).split(':')[0] as string
      const entry = result.kinds.get(kind) ?? { count: 0, minS: Infinity, maxS: -Infinity }
      entry.count++
      entry.minS = Math.min(entry.minS, ttl / 1000)
      entry.maxS = Math.max(entry.maxS, ttl / 1000)
      result.kinds.set(kind, entry)
    }
  } while (cursor !== '0')
  return result
}

async function countKeys (admin: Redis, prefix: string): Promise<number> {
  let count = 0
  let cursor = '0'
  do {
    const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    cursor = next
    count += keys.length
  } while (cursor !== '0')
  return count
}

/**
 * Redis memory per topic history and per idempotency key, through Herald's HTTP API (defaults: 1,000 events per
 * topic, 24 h retention, 10 min idempotency window), and the TTL of every key Herald wrote. Then a second Herald
 * on the same Redis with a 2 s retention (its own prefix) shows the keys really go.
 */
export const redisKeys: Finding = {
  number: 3,
  title: 'Redis memory bounded: bytes per topic and per idempotency key, every key with a TTL',
  before: 'every topic\'s history kept forever (~4.3 KB each; 100k per-user topics took 416 MB), idempotency records ~160 B each for 24 h',
  limitSeconds: 60,
  measure: async (lab) => {
    const redis = await lab.redis()
    const herald = await lab.herald({ REDIS_URL: redis.url })
    const admin = redis.client()
    lab.defer(() => admin.disconnect())
    const publisher = new HttpPublisher(herald.port, 30_000)
    lab.defer(() => publisher.close())

    await publishAll(publisher, () => JSON.stringify({ topic: 'warm-up', data: DATA }), 1)
    const before = await usedMemory(admin)
    await publishAll(publisher, (index) => JSON.stringify({ topic: `user/${index}`, data: DATA }), TOPICS)
    const afterTopics = await usedMemory(admin)
    const historyUsage = Number(await admin.memory('USAGE', 'herald:{user/17}:h', 'SAMPLES', 0))
    await publishAll(publisher, (index) => JSON.stringify({ topic: 'orders', data: DATA, idempotencyKey: `order-${index}` }), KEYS)
    const afterKeys = await usedMemory(admin)
    const idemUsage = Number(await admin.memory('USAGE', 'herald:{orders}:i:order-17'))
    const ttls = await keyTtls(admin, 'herald:')
    const perTopic = (afterTopics - before) / TOPICS
    const perKey = (afterKeys - afterTopics) / KEYS

    // Short windows, another prefix: the keys must be gone a retention after the last publish.
    const short = await lab.herald({ REDIS_URL: redis.url, HERALD_REDIS_PREFIX: 'short:', HERALD_HISTORY_RETENTION_MS: '2000', HERALD_IDEMPOTENCY_TTL_MS: '1000' })
    const shortPublisher = new HttpPublisher(short.port, 30_000)
    lab.defer(() => shortPublisher.close())
    await publishAll(shortPublisher, (index) => JSON.stringify({ topic: `user/${index}`, data: DATA, idempotencyKey: `k-${index}` }), 1_000)
    const lastPublishAt = Date.now()
    const shortKeys = await countKeys(admin, 'short:')
    await sleep(1_000)
    await until(async () => await countKeys(admin, 'short:') === 0, 10_000, 'the short-retention keys to expire').catch(() => {})
    const left = await countKeys(admin, 'short:')
    const goneAfter = Date.now() - lastPublishAt

    const kinds = [...ttls.kinds].map(([kind, entry]) => `${kind}: ${entry.count} (TTL ${entry.minS.toFixed(0)}–${entry.maxS.toFixed(0)} s)`).join(', ')
    return {
      figures: `~${perTopic.toFixed(0)} B per topic history (MEMORY USAGE ${historyUsage} B), ~${perKey.toFixed(0)} B per idempotency key (MEMORY USAGE ${idemUsage} B); ` +
        `${ttls.withoutTtl.length} of ${ttls.keys} keys without a TTL; with a 2 s retention ${left === 0 ? `all ${shortKeys} keys gone ${(goneAfter / 1000).toFixed(1)} s after the last publish` : `${left} of ${shortKeys} keys still there after ${(goneAfter / 1000).toFixed(1)} s`}`,
      details: [
        `${TOPICS.toLocaleString('en')} topics with one ${JSON.stringify(DATA).length}-byte event each, published through Herald's HTTP API: used_memory +${((afterTopics - before) / 1e6).toFixed(1)} MB, ` +
          `${perTopic.toFixed(0)} B per topic; MEMORY USAGE of one history key ${historyUsage} B. At that rate 100k per-user topics cost ${(perTopic * 100_000 / 1e6).toFixed(0)} MB while active, and nothing a retention (24 h by default) after their last event.`,
        `${KEYS.toLocaleString('en')} publishes with distinct idempotency keys (to one topic, whose history stays trimmed at ~1,000 events): used_memory +${((afterKeys - afterTopics) / 1e6).toFixed(2)} MB, ` +
          `${perKey.toFixed(0)} B per key with its event; MEMORY USAGE of one idempotency record ${idemUsage} B; each kept for the idempotency window (10 min by default).`,
        `Every key under herald: (SCAN + PTTL): ${ttls.keys} keys, ${ttls.withoutTtl.length} without a TTL${ttls.withoutTtl.length > 0 ? ` (**${ttls.withoutTtl.slice(0, 5).join(', ')}**)` : ''}; ${kinds}.`,
        `A second Herald on the same Redis with HERALD_REDIS_PREFIX=short:, HERALD_HISTORY_RETENTION_MS=2000 and HERALD_IDEMPOTENCY_TTL_MS=1000 published 1,000 topics with a key each (${shortKeys} keys): ` +
          (left === 0 ? `all gone ${(goneAfter / 1000).toFixed(1)} s after the last publish.` : `**${left} still there ${(goneAfter / 1000).toFixed(1)} s after the last publish.**`)
      ]
    }
  }
}
