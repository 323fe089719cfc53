// Idempotency records last their window (HERALD_IDEMPOTENCY_TTL_MS) and no longer, on memory, Redis and a Redis
// Cluster: after it the same key stores a new event, and what a record costs is freed (Redis: the record's own
// expiry, not the history's 24 h; memory: expired records dropped, so the map does not grow with every key ever used).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { build, publish } from './helper.js'
import { ALL_BROKERS, brokerEnvironment } from './helpers/brokers.js'
import { scanKeys } from './helpers/redis-keys.js'

const sleep = async (ms: number) => await new Promise((resolve) => setTimeout(resolve, ms))

const brokers = brokerEnvironment('idempotency', { cluster: true })
const WINDOW_MS = 500

for (const broker of ALL_BROKERS) {
  test(`${broker}: an idempotency key is remembered for its window, and after it the same key stores a new event`, { timeout: 30_000 }, async (t) => {
    // The history's retention is the default 24 h: a record kept as long as the history would outlive its window.
    const { env, prefix } = brokers.env(broker)
    const { url } = await build(t, { ...env, HERALD_IDEMPOTENCY_TTL_MS: String(WINDOW_MS) })
    const first = await publish(url, { topic: 'orders', data: 1, idempotencyKey: 'order-17' })
    const retried = await publish(url, { topic: 'orders', data: 1, idempotencyKey: 'order-17' })
    assert.equal(first.status, 202)
    assert.deepEqual([retried.body.id, retried.body.duplicate], [first.body.id, true], 'within the window the key gives back the first event')
    if (broker !== 'memory') {
      const admin = brokers.adminOf(broker)
      // Found by name, whatever the key layout.
      const records = (await scanKeys(admin, `${prefix}*`)).filter((key) => key.includes('order-17'))
      assert.equal(records.length, 1, `one record for the key: ${JSON.stringify(records)}`)
      const ttl = await admin.pttl(records[0] as string)
      assert.ok(ttl > 0 && ttl <= WINDOW_MS, `the record expires with its window (${WINDOW_MS} ms), not with the history's retention: PTTL ${ttl} ms`)
    }
    await sleep(WINDOW_MS + 200)
    const later = await publish(url, { topic: 'orders', data: 2, idempotencyKey: 'order-17' })
    assert.equal(later.status, 202)
    assert.deepEqual({ duplicate: later.body.duplicate, sameId: later.body.id === first.body.id }, { duplicate: false, sameId: false },
      `${WINDOW_MS + 200} ms after the first publish, past the ${WINDOW_MS} ms window, the key stores a new event (got ${later.body.id as string}, first ${first.body.id as string})`)
  })
}

test('memory: expired idempotency records are dropped: the memory broker does not keep every key ever used', { timeout: 30_000 }, async (t) => {
  const { app, url } = await build(t, { HERALD_IDEMPOTENCY_TTL_MS: String(WINDOW_MS) })
  const records = (app.hub.transport as unknown as { idempotencyRecords?: unknown }).idempotencyRecords
  assert.ok(records instanceof Map, 'the memory transport keeps its idempotency records in a Map `idempotencyRecords`: if they moved, point this check at them')
  for (let index = 0; index < 200; index++) assert.equal((await publish(url, { topic: 'orders', data: index, idempotencyKey: `order-${index}` })).status, 202)
  // Some may have expired already on a slow machine, and been dropped by a later publish.
  assert.ok(records.size > 0, 'records are kept in the map')
  await sleep(WINDOW_MS + 200)
  assert.equal((await publish(url, { topic: 'orders', data: 'one more', idempotencyKey: 'order-next' })).status, 202)
  assert.ok(records.size <= 1, `200 records past their window are dropped by the next keyed publish: ${records.size} remain`)
})
