// POST /v1/events/batch on memory, Redis and a Redis Cluster: the whole batch is checked before anything is stored,
// each event is authorized, stored in batch order and counted; on Redis a failure part-way says exactly which events
// were stored, and a retry with the same idempotency keys completes the batch with no duplicate.
import { Ajv2020 } from 'ajv/dist/2020.js'
import assert from 'node:assert/strict'
import { after, before, describe, test, type TestContext } from 'node:test'
import type { Redis } from 'ioredis'
import { compileBatchValidator } from '../src/batch-validator.js'
import { describeOutcomes } from '../src/publish-batch.js'
import { BrokerUnavailableError } from '../src/errors.js'
import { unexpectedPublishReply } from '../src/transport/redis-errors.js'
import { publishBatchBody } from '../src/schemas.js'
import type { PublishInput, PublishResult } from '../src/transport/transport.js'
import { build, publish, type Herald } from './helper.js'
import { seq } from './helpers/event-ids.js'
import { scrape, type Scrape } from './helpers/metrics.js'
import { RedisCluster } from './helpers/redis-cluster.js'
import { RedisProxy } from './helpers/redis-proxy.js'
import { RedisServer } from './helpers/redis-server.js'
import { openStream, payloads, type StreamClient } from './helpers/sse-client.js'
import { SECRET, token } from './helpers/tokens.js'

interface BatchEvent { topic: string | string[], data: unknown, type?: string, retry?: number, idempotencyKey?: string }
interface TopicOutcome { topic: string, status: string, id?: string, duplicate?: boolean }
interface EventOutcome { status?: string, ids?: string[], topics?: string[], duplicate?: boolean, byTopic?: TopicOutcome[] }
interface BatchReply { status: number, headers: Headers, body: { events?: EventOutcome[], message?: string, code?: string, statusCode?: number } }

async function publishBatch (url: string, body: unknown, headers: Record<string, string> = {}): Promise<BatchReply> {
  const response = await fetch(`${url}/v1/events/batch`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(20_000)
  })
  return { status: response.status, headers: response.headers, body: await response.json() as BatchReply['body'] }
}

/** A stream of one topic from its oldest retained event: what history holds for it, once `count` events came. */
async function history (t: TestContext, url: string, topic: string, count: number): Promise<StreamClient> {
  const client = await openStream(`${url}/v1/stream?topic=${encodeURIComponent(topic)}&lastEventId=0`)
  t.after(client.close)
  await client.waitForEvents(count, 10_000)
  return client
}

let redis: RedisServer
// No replicas: nothing here fails a master over.
let cluster: RedisCluster
before(async () => { [redis, cluster] = await Promise.all([RedisServer.start(), RedisCluster.start({ replicas: 0 })]) })
after(async () => await Promise.all([redis.stop(), cluster.stop()]))
let prefixes = 0

// On a cluster a batch's topics live on several shards: its calls go out per shard, in batch order on each topic.
const BROKERS = ['memory', 'redis', 'cluster'] as const

async function herald (t: TestContext, broker: typeof BROKERS[number], env: Record<string, string> = {}): Promise<Herald> {
  const brokerEnv: Record<string, string> = broker === 'memory' ? {} : { REDIS_URL: broker === 'redis' ? redis.url : cluster.url, HERALD_REDIS_PREFIX: `batch${++prefixes}:` }
  return await build(t, { ...brokerEnv, ...env })
}

for (const broker of BROKERS) {
  describe(`${broker}`, () => {
    test('a batch is stored in its order: the reply lists each event\'s ids, streams and history get them in batch order per topic', async (t) => {
      const { url } = await herald(t, broker)
      const live = { a: await openStream(`${url}/v1/stream?topic=a`), b: await openStream(`${url}/v1/stream?topic=b`) }
      for (const client of Object.values(live)) t.after(client.close)
      const events: BatchEvent[] = []
      // Interleaved over three topics, one of them with events to two topics, types and retries among them.
      for (let index = 0; index < 60; index++) {
        const topic = index % 5 === 0 ? ['a', 'b', 'a'] : ['a', 'b', 'c'][index % 3] as string
        events.push({ topic, data: { index }, ...(index % 7 === 0 ? { type: 'tick' } : {}), ...(index % 11 === 0 ? { retry: 500 } : {}) })
      }
      const reply = await publishBatch(url, { events })
      assert.equal(reply.status, 202, JSON.stringify(reply.body))
      const outcomes = reply.body.events ?? []
      assert.equal(outcomes.length, events.length)
      for (const [index, outcome] of outcomes.entries()) {
        const topics = typeof events[index]?.topic === 'string' ? [events[index]?.topic] : ['a', 'b']
        assert.deepEqual(Object.keys(outcome).sort(), ['duplicate', 'ids', 'topics'], 'exactly the documented fields')
        assert.deepEqual(outcome.topics, topics, `event ${index}'s topics, each once`)
        assert.equal(outcome.ids?.length, topics.length, `event ${index} has an id per topic`)
        assert.equal(outcome.duplicate, false)
      }

      for (const topic of ['a', 'b'] as const) {
        const expected = events.flatMap((event, index) => [event.topic].flat().includes(topic) ? [index] : [])
        const idsOnTopic = expected.map((index) => {
          const outcome = outcomes[index] as EventOutcome
          return outcome.ids?.[outcome.topics?.indexOf(topic) ?? -1] as string
        })
        for (let index = 1; index < idsOnTopic.length; index++) {
          assert.ok(seq(idsOnTopic[index] as string) > seq(idsOnTopic[index - 1] as string), `${topic}: ids grow in batch order`)
        }
        const received = await live[topic].waitForEvents(expected.length, 10_000)
        assert.deepEqual(payloads(received), expected.map((index) => ({ index })), `${topic}: live, in batch order`)
        assert.deepEqual(received.map((event) => event.id), idsOnTopic, `${topic}: the ids the reply gave`)
        assert.deepEqual(received.map((event) => event.event), expected.map((index) => index % 7 === 0 ? 'tick' : 'message'), `${topic}: types`)
        const replayed = await history(t, url, topic, expected.length)
        assert.deepEqual(replayed.events.map((event) => [event.id, event.data, event.retry]), received.map((event) => [event.id, event.data, event.retry]), `${topic}: history holds the same`)
      }
    })

    test('a bad batch is refused whole, naming the first bad event\'s index and field, and nothing is stored', async (t) => {
      const { url } = await herald(t, broker, { HERALD_MAX_BATCH_EVENTS: '50' })
      const watcher = await openStream(`${url}/v1/stream?topic=a`)
      t.after(watcher.close)
      const first = await publish(url, { topic: 'a', data: 'before' })
      assert.equal(first.status, 202)
      const good = (index: number): BatchEvent => ({ topic: 'a', data: { index } })
      const batch = (bad: Record<number, unknown>, length = 20) => ({ events: Array.from({ length }, (_, index) => bad[index] ?? good(index)) })
      let deep: unknown = 0
      for (let level = 0; level < 70; level++) deep = [deep]
      const cases: Array<{ name: string, body: unknown, status: number, message: RegExp, code: string }> = [
        { name: 'a bad topic', body: batch({ 17: { topic: 'a b', data: 1 }, 18: { topic: '', data: 1 } }), status: 400, code: 'FST_ERR_VALIDATION', message: /^body\/events\/17\/topic must be a topic name/ },
        { name: 'a bad topic in a list', body: batch({ 3: { topic: ['a', 'not ok'], data: 1 } }), status: 400, code: 'FST_ERR_VALIDATION', message: /^body\/events\/3\/topic\/1 must be a topic name/ },
        { name: 'no data', body: batch({ 5: { topic: 'a' } }), status: 400, code: 'FST_ERR_VALIDATION', message: /^body\/events\/5 must have 'data'/ },
        { name: 'an unknown field', body: batch({ 9: { topic: 'a', data: 1, colour: 'red' } }), status: 400, code: 'FST_ERR_VALIDATION', message: /^body\/events\/9 has unknown 'colour'/ },
        { name: 'a type with LF', body: batch({ 19: { topic: 'a', data: 1, type: 'x\ndata: injected' } }), status: 400, code: 'FST_ERR_VALIDATION', message: /^body\/events\/19\/type must be an event type/ },
        { name: 'a 500-character type', body: batch({ 2: { topic: 'a', data: 1, type: 'x'.repeat(500) } }), status: 400, code: 'FST_ERR_VALIDATION', message: /^body\/events\/2\/type must be an event type/ },
        { name: 'a forged herald type', body: batch({ 4: { topic: 'a', data: 1, type: 'herald.reset' } }), status: 400, code: 'FST_ERR_VALIDATION', message: /^body\/events\/4\/type/ },
        { name: 'a bad retry', body: batch({ 6: { topic: 'a', data: 1, retry: -1 } }), status: 400, code: 'FST_ERR_VALIDATION', message: /^body\/events\/6\/retry/ },
        { name: 'a bad idempotency key', body: batch({ 7: { topic: 'a', data: 1, idempotencyKey: 'a b' } }), status: 400, code: 'FST_ERR_VALIDATION', message: /^body\/events\/7\/idempotencyKey/ },
        { name: 'an event that is no object', body: batch({ 8: 'hello' }), status: 400, code: 'FST_ERR_VALIDATION', message: /^body\/events\/8 / },
        { name: 'data too deep', body: batch({ 11: { topic: 'a', data: deep } }), status: 400, code: 'HERALD_DATA_TOO_DEEP', message: /^body\/events\/11\/data nests deeper than 64 levels$/ },
        { name: 'no events', body: { events: [] }, status: 400, code: 'FST_ERR_VALIDATION', message: /^body\/events must be 1-50 events/ },
        { name: 'events not an array', body: { events: { topic: 'a', data: 1 } }, status: 400, code: 'FST_ERR_VALIDATION', message: /^body\/events must be/ },
        { name: 'an unknown top-level field', body: { events: [good(0)], atomic: true }, status: 400, code: 'FST_ERR_VALIDATION', message: /^body has unknown 'atomic'; allowed: events$/ },
        { name: 'a single event\'s body', body: { topic: 'a', data: 1 }, status: 400, code: 'FST_ERR_VALIDATION', message: /^body must have 'events'$/ },
        { name: 'more events than the limit', body: batch({ 50: { topic: 'bad topic' } }, 51), status: 413, code: 'HERALD_BATCH_TOO_LARGE', message: /^a batch may hold at most 50 events \(HERALD_MAX_BATCH_EVENTS\); this one has 51$/ },
        { name: 'a body over HERALD_MAX_BODY_BYTES', body: batch({ 0: { topic: 'a', data: 'x'.repeat(70_000) } }, 1), status: 413, code: 'FST_ERR_CTP_BODY_TOO_LARGE', message: /too large/i },
        { name: 'malformed JSON', body: '{"events": [', status: 400, code: 'FST_ERR_CTP_INVALID_JSON_BODY', message: /not valid JSON/ }
      ]
      for (const { name, body, status, code, message } of cases) {
        const reply = await publishBatch(url, body)
        assert.equal(reply.status, status, `${name}: ${JSON.stringify(reply.body)}`)
        assert.equal(reply.body.code, code, name)
        assert.match(reply.body.message ?? '', message, name)
        assert.equal(reply.body.events, undefined, `${name}: no per-event outcome when nothing was tried`)
      }
      const last = await publish(url, { topic: 'a', data: 'after' })
      assert.equal(seq(last.body.id), seq(first.body.id) + 1, 'no position was spent on a refused batch')
      await watcher.waitForEvents(2)
      // Time for an event of a refused batch, which should not come, to arrive.
      await new Promise((resolve) => setTimeout(resolve, 100))
      assert.deepEqual(payloads(watcher.events), ['before', 'after'], 'live: nothing of a refused batch')
      assert.deepEqual(payloads((await history(t, url, 'a', 2)).events), ['before', 'after'], 'history: nothing of a refused batch')
    })

    test('each event\'s topics are authorized against the one token: a refused one names its index and topic, and nothing is stored', async (t) => {
      const { url } = await herald(t, broker, { HERALD_JWT_SECRET: SECRET })
      const auth = (publish: string[]) => ({ authorization: `Bearer ${token({ publish })}` })
      const events = [{ topic: 'chat/a', data: 0 }, { topic: ['chat/b', 'chat/c'], data: 1 }, { topic: ['chat/d', 'billing'], data: 2 }, { topic: 'secret', data: 3 }]
      const refused = await publishBatch(url, { events }, auth(['chat/*']))
      assert.equal(refused.status, 403)
      assert.equal(refused.body.code, 'HERALD_FORBIDDEN')
      assert.equal(refused.body.message, 'body/events/2: this token may not publish to topic "billing"')
      const missing = await publishBatch(url, { events: events.slice(0, 2) })
      assert.equal(missing.status, 401)
      assert.equal(missing.body.code, 'HERALD_TOKEN_MISSING')
      const invalid = await publishBatch(url, { events: events.slice(0, 2) }, { authorization: 'Bearer nonsense' })
      assert.equal(invalid.status, 401)
      assert.equal(invalid.body.code, 'HERALD_TOKEN_INVALID')

      const allowed = await publishBatch(url, { events }, auth(['chat/*', 'billing', 'secret']))
      assert.equal(allowed.status, 202, JSON.stringify(allowed.body))
      // The events of the refused batch were never stored: chat/a holds only the allowed batch's event.
      const replayed = await history(t, url, 'chat/a', 1)
      await new Promise((resolve) => setTimeout(resolve, 100))
      assert.deepEqual(replayed.events.map((event) => event.id), allowed.body.events?.[0]?.ids)
    })

    test('idempotency keys: an event already stored comes back as a duplicate with its first ids, within a batch and across batches, and is sent once', async (t) => {
      const { url } = await herald(t, broker)
      const watcher = await openStream(`${url}/v1/stream?topic=orders`)
      t.after(watcher.close)
      const first = await publishBatch(url, {
        events: [
          { topic: 'orders', data: 'k1', idempotencyKey: 'k1' },
          { topic: 'orders', data: 'k2', idempotencyKey: 'k2' },
          { topic: 'orders', data: 'k1 again', idempotencyKey: 'k1' }
        ]
      })
      assert.equal(first.status, 202)
      const [one, two, again] = first.body.events ?? []
      assert.equal(one?.duplicate, false)
      assert.equal(two?.duplicate, false)
      assert.deepEqual(again, { ...one, duplicate: true }, 'the same key later in the same batch')
      const retried = await publishBatch(url, {
        events: [
          { topic: 'orders', data: 'k1', idempotencyKey: 'k1' },
          { topic: 'orders', data: 'k2', idempotencyKey: 'k2' },
          { topic: 'orders', data: 'k3', idempotencyKey: 'k3' }
        ]
      })
      assert.equal(retried.status, 202)
      assert.deepEqual(retried.body.events?.slice(0, 2), [{ ...one, duplicate: true }, { ...two, duplicate: true }])
      assert.equal(retried.body.events?.[2]?.duplicate, false)
      const single = await publish(url, { topic: 'orders', data: 'k2' }, { 'idempotency-key': 'k2' })
      assert.deepEqual([single.body.id], two?.ids, 'a single publish shares the keys')
      await watcher.waitForEvents(3)
      await new Promise((resolve) => setTimeout(resolve, 100))
      assert.deepEqual(payloads(watcher.events), ['k1', 'k2', 'k3'], 'each event sent once')
    })

    test('herald_events_published_total counts events, not requests', async (t) => {
      const { app, url } = await herald(t, broker)
      const before = await scrape(app)
      const count = (sample: Scrape, result: string) => sample.value('herald_events_published_total', { result }) ?? 0
      assert.equal((await publishBatch(url, { events: [{ topic: 'm', data: 1, idempotencyKey: 'm1' }, { topic: ['m', 'n'], data: 2 }, { topic: 'n', data: 3 }, { topic: 'm', data: 1, idempotencyKey: 'm1' }] })).status, 202)
      assert.equal((await publishBatch(url, { events: [{ topic: 'm', data: 1 }, { topic: 'bad topic', data: 2 }, { topic: 'm', data: 3 }] })).status, 400)
      assert.equal((await publish(url, { topic: 'm', data: 4 })).status, 202)
      const after = await scrape(app)
      assert.equal(count(after, 'stored') - count(before, 'stored'), 4, 'three new events of the batch and the single one')
      assert.equal(count(after, 'duplicate') - count(before, 'duplicate'), 1)
      assert.equal(count(after, 'refused') - count(before, 'refused'), 3, 'each event of the refused batch')
      assert.equal((after.value('herald_publish_duration_seconds_count') ?? 0) - (before.value('herald_publish_duration_seconds_count') ?? 0), 3, 'one duration per request')
    })
  })
}

describe('redis: a failure part-way', () => {
  let admin: Redis
  before(() => { admin = redis.client() })
  after(() => admin.disconnect())

  /** The Redis key holding a topic's history, found by what it is (a stream), wherever the layout puts it. */
  async function historyKey (prefix: string, topic: string): Promise<string> {
    const keys = await admin.keys(`${prefix}*${topic}*`)
    const streams = []
    for (const key of keys) if (await admin.type(key) === 'stream') streams.push(key)
    assert.equal(streams.length, 1, `one history stream for ${topic} among ${keys.join(', ')}`)
    return streams[0] as string
  }

  /** Checks a partial reply against what Redis holds: `stored` events are in history once, `not-stored` ones are not. */
  function checkAgainstHistory (events: BatchEvent[], outcomes: EventOutcome[], replayed: Map<string, StreamClient>): void {
    for (const [index, outcome] of outcomes.entries()) {
      const topic = events[index]?.topic as string
      const found = replayed.get(topic)?.events.filter((event) => JSON.parse(event.data).index === index) ?? []
      if (outcome.status === 'stored') {
        assert.deepEqual(found.map((event) => event.id), outcome.ids, `event ${index} is stored once, with the ids the reply gave`)
      } else if (outcome.status === 'not-stored') {
        assert.deepEqual(found, [], `event ${index} was not stored, as the reply says`)
      } else {
        assert.equal(outcome.status, 'unknown', `event ${index}`)
      }
    }
  }

  test('an event Redis refuses is not stored: the 503 says which events were, and a retry with the same keys completes the batch with no duplicate', async (t) => {
    const prefix = `batch${++prefixes}:`
    const { url } = await build(t, { REDIS_URL: redis.url, HERALD_REDIS_PREFIX: prefix })
    const watchers = new Map<string, StreamClient>()
    for (const topic of ['p/ok', 'p/poisoned']) {
      const client = await openStream(`${url}/v1/stream?topic=${topic}`)
      t.after(client.close)
      watchers.set(topic, client)
    }
    assert.equal((await publish(url, { topic: 'p/poisoned', data: 'first' })).status, 202)
    await watchers.get('p/poisoned')?.waitForEvents(1)
    // Deterministic: the topic's history key holds a string, so Redis answers the event for that topic with an
    // error (WRONGTYPE), whatever else it is sent around it.
    const poisoned = await historyKey(prefix, 'p/poisoned')
    await admin.del(poisoned)
    await admin.set(poisoned, 'not a stream')

    const events: BatchEvent[] = Array.from({ length: 12 }, (_, index) => ({ topic: index === 5 ? 'p/poisoned' : 'p/ok', data: { index }, idempotencyKey: `poison-${index}` }))
    const failed = await publishBatch(url, { events })
    assert.equal(failed.status, 503, JSON.stringify(failed.body))
    assert.equal(failed.body.code, 'HERALD_BROKER_UNAVAILABLE')
    assert.equal(failed.headers.get('retry-after'), '1')
    const outcomes = failed.body.events ?? []
    assert.equal(outcomes.length, events.length)
    t.diagnostic(`503: ${failed.body.message}; statuses ${outcomes.map((outcome) => outcome.status).join(' ')}`)
    assert.deepEqual(outcomes.slice(0, 5).map((outcome) => outcome.status), Array(5).fill('stored'), 'the events before the refused one were stored')
    assert.equal(outcomes[5]?.status, 'not-stored', 'the refused one was not')
    for (const outcome of outcomes.slice(6)) assert.ok(outcome.status === 'stored' || outcome.status === 'not-stored', 'the ones after it either way, said exactly')
    const stored = outcomes.filter((outcome) => outcome.status === 'stored').length
    assert.match(failed.body.message ?? '', new RegExp(`^event 5: .*\\. ${stored} of 12 events were stored, ${12 - stored} (was|were) not: retry the batch with the same idempotency keys$`))

    const okEvents = events.flatMap((event, index) => event.topic === 'p/ok' && outcomes[index]?.status === 'stored' ? [index] : [])
    const replayedOk = await history(t, url, 'p/ok', okEvents.length)
    await new Promise((resolve) => setTimeout(resolve, 100))
    checkAgainstHistory(events, outcomes, new Map([['p/ok', replayedOk], ['p/poisoned', watchers.get('p/poisoned') as StreamClient]]))

    await admin.del(poisoned)
    const retried = await publishBatch(url, { events })
    assert.equal(retried.status, 202, JSON.stringify(retried.body))
    for (const [index, outcome] of (retried.body.events ?? []).entries()) {
      const before = outcomes[index] as EventOutcome
      if (before.status === 'stored') assert.deepEqual(outcome, { ids: before.ids, topics: before.topics, duplicate: true }, `event ${index}: already stored`)
      else assert.equal(outcome.duplicate, false, `event ${index}: stored now`)
    }
    const ok = watchers.get('p/ok') as StreamClient
    await ok.waitForEvents(11)
    await watchers.get('p/poisoned')?.waitForEvents(2)
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.deepEqual(payloads(ok.events), events.flatMap((event, index) => event.topic === 'p/ok' ? [{ index }] : []), 'each event once, in batch order')
    assert.deepEqual(payloads(watchers.get('p/poisoned')?.events ?? []), ['first', { index: 5 }])
  })

  test('an event on several topics that Redis refuses on one: the 503 says per topic where it was stored, the metrics count it refused, and a retry completes it with no duplicate', async (t) => {
    const prefix = `batch${++prefixes}:`
    const { app, url } = await build(t, { REDIS_URL: redis.url, HERALD_REDIS_PREFIX: prefix })
    const streams = new Map<string, StreamClient>()
    for (const query of ['topic=m/ok', 'topic=m/poisoned', 'topic=m/ok&topic=m/poisoned']) {
      const client = await openStream(`${url}/v1/stream?${query}`)
      t.after(client.close)
      streams.set(query, client)
    }
    const stream = (query: string) => streams.get(query) as StreamClient
    assert.equal((await publish(url, { topic: 'm/poisoned', data: 'first' })).status, 202)
    await stream('topic=m/poisoned').waitForEvents(1)
    // The topic's history key holds a string: the event's call for that topic fails (WRONGTYPE), its other
    // topic's call succeeds.
    const poisoned = await historyKey(prefix, 'm/poisoned')
    await admin.del(poisoned)
    await admin.set(poisoned, 'not a stream')

    const events: BatchEvent[] = [
      { topic: 'm/ok', data: { index: 0 }, idempotencyKey: 'multi-0' },
      { topic: ['m/ok', 'm/poisoned'], data: { index: 1 }, idempotencyKey: 'multi-1' },
      { topic: ['m/poisoned', 'm/ok'], data: { index: 2 }, idempotencyKey: 'multi-2' },
      { topic: 'm/ok', data: { index: 3 }, idempotencyKey: 'multi-3' }
    ]
    const before = await scrape(app)
    const failed = await publishBatch(url, { events })
    const after = await scrape(app)
    assert.equal(failed.status, 503, JSON.stringify(failed.body))
    assert.equal(failed.body.code, 'HERALD_BROKER_UNAVAILABLE')
    t.diagnostic(`503: ${failed.body.message}; events ${JSON.stringify(failed.body.events)}`)
    assert.match(failed.body.message ?? '', /^event 1 on topic "m\/poisoned": Redis refused the publish \(WRONGTYPE\).*\. 2 of 4 events were stored, 2 in part, 0 were not: retry the batch with the same idempotency keys$/)
    const outcomes = failed.body.events ?? []
    const okId = (index: number) => outcomes[index]?.byTopic?.find((onTopic) => onTopic.topic === 'm/ok')?.id as string
    assert.deepEqual(outcomes.map((outcome) => outcome.status), ['stored', 'partial', 'partial', 'stored'])
    assert.deepEqual(outcomes[1]?.byTopic, [{ topic: 'm/ok', status: 'stored', id: okId(1), duplicate: false }, { topic: 'm/poisoned', status: 'not-stored' }])
    assert.deepEqual(outcomes[2]?.byTopic, [{ topic: 'm/poisoned', status: 'not-stored' }, { topic: 'm/ok', status: 'stored', id: okId(2), duplicate: false }])
    const okIds = [outcomes[0]?.ids?.[0], okId(1), okId(2), outcomes[3]?.ids?.[0]]
    assert.deepEqual((await history(t, url, 'm/ok', 4)).events.map((event) => event.id), okIds, 'm/ok holds every event, with the ids the reply gave')

    const delta = (name: string, labels: Record<string, string>) => (after.value(name, labels) ?? 0) - (before.value(name, labels) ?? 0)
    assert.equal(delta('herald_events_published_total', { result: 'stored' }), 2, 'the events stored on every topic')
    assert.equal(delta('herald_events_published_total', { result: 'refused' }), 2, 'the events stored on some topics only')
    assert.equal(delta('herald_publish_refusals_total', { reason: 'unavailable' }), 1, 'the request, as a 503')

    await admin.del(poisoned)
    const retried = await publishBatch(url, { events })
    assert.equal(retried.status, 202, JSON.stringify(retried.body))
    const done = retried.body.events ?? []
    assert.deepEqual(done[0], { ids: [okIds[0]], topics: ['m/ok'], duplicate: true })
    assert.deepEqual(done[3], { ids: [okIds[3]], topics: ['m/ok'], duplicate: true })
    assert.deepEqual(done[1]?.topics, ['m/ok', 'm/poisoned'])
    assert.equal(done[1]?.ids?.[0], okIds[1], 'event 1 on m/ok: the position it got before')
    assert.deepEqual(done[2]?.topics, ['m/poisoned', 'm/ok'])
    assert.equal(done[2]?.ids?.[1], okIds[2], 'event 2 on m/ok: the position it got before')
    assert.equal(done[1]?.duplicate, false, 'stored now on m/poisoned')

    await stream('topic=m/ok').waitForEvents(4)
    await stream('topic=m/poisoned').waitForEvents(3)
    await stream('topic=m/ok&topic=m/poisoned').waitForEvents(5)
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.deepEqual(payloads(stream('topic=m/ok').events), [0, 1, 2, 3].map((index) => ({ index })), 'm/ok: each event once, in batch order')
    assert.deepEqual(payloads(stream('topic=m/poisoned').events), ['first', { index: 1 }, { index: 2 }], 'm/poisoned: each event once, in batch order')
    const both = payloads(stream('topic=m/ok&topic=m/poisoned').events).map((data) => JSON.stringify(data))
    assert.deepEqual([...both].sort(), ['"first"', ...[0, 1, 2, 3].map((index) => JSON.stringify({ index }))].sort(), 'a stream of both topics: each event once')
  })

  test('POST /v1/events to several topics that Redis refuses on one: the 503 says where it was stored, and a retry with the same key stores it on the rest once', async (t) => {
    const prefix = `batch${++prefixes}:`
    const { url } = await build(t, { REDIS_URL: redis.url, HERALD_REDIS_PREFIX: prefix })
    const ok = await openStream(`${url}/v1/stream?topic=s/ok`)
    t.after(ok.close)
    assert.equal((await publish(url, { topic: 's/poisoned', data: 'first' })).status, 202)
    const poisoned = await historyKey(prefix, 's/poisoned')
    await admin.del(poisoned)
    await admin.set(poisoned, 'not a stream')

    const event = { topic: ['s/ok', 's/poisoned'], data: { n: 1 }, idempotencyKey: 'single-1' }
    const failed = await publish(url, event)
    assert.equal(failed.status, 503, JSON.stringify(failed.body))
    assert.match(failed.body.message, /Redis refused the publish \(WRONGTYPE\).*; but it was stored on s\/ok: retry with the same idempotency key/)
    await admin.del(poisoned)
    const retried = await publish(url, event)
    assert.equal(retried.status, 202, JSON.stringify(retried.body))
    await ok.waitForEvents(1)
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.deepEqual(payloads(ok.events), [{ n: 1 }], 's/ok: the event once, from the first call')
  })

  test('Redis stops answering mid-batch: the events whose answers did not come are `unknown`, the 503 says so, and a retry completes the batch with no duplicate', async (t) => {
    const prefix = `batch${++prefixes}:`
    const proxy = await RedisProxy.start(redis.port)
    t.after(async () => await proxy.close())
    const { url } = await build(t, { REDIS_URL: proxy.url, HERALD_REDIS_PREFIX: prefix, HERALD_REDIS_COMMAND_TIMEOUT_MS: '300' })
    const watcher = await openStream(`${url}/v1/stream?topic=hang`)
    t.after(watcher.close)
    // The watcher's own first history read must not be caught in the hold below: wait until it has caught up.
    assert.equal((await publish(url, { topic: 'hang', data: 'warm-up' })).status, 202)
    await watcher.waitForEvents(1)
    // Redis gets event 4's command and runs it, but its answer (and any after it) is held, as from a Redis that
    // stopped answering: the publish times out, and Herald cannot know whether it was stored.
    proxy.onceClientSends('publisher', /marker-4\b/, (connection) => connection.pause('toClient'))
    const events: BatchEvent[] = Array.from({ length: 10 }, (_, index) => ({ topic: 'hang', data: { index, marker: `marker-${index}` }, idempotencyKey: `hang-${index}` }))
    const failed = await publishBatch(url, { events })
    proxy.resume('publisher', 'toClient')
    assert.equal(failed.status, 503, JSON.stringify(failed.body))
    const outcomes = failed.body.events ?? []
    t.diagnostic(`503: ${failed.body.message}; statuses ${outcomes.map((outcome) => outcome.status).join(' ')}`)
    // Every call was sent at once (one pipelined round trip): those answered before the hold are stored, the rest
    // unknown; none is not-stored, since Redis got them all.
    for (const [index, outcome] of outcomes.entries()) {
      assert.ok(outcome.status === 'stored' || (outcome.status === 'unknown' && JSON.stringify(outcome.byTopic) === JSON.stringify([{ topic: 'hang', status: 'unknown' }])), `event ${index}: ${JSON.stringify(outcome)}`)
      if (index >= 4) assert.equal(outcome.status, 'unknown', `event ${index}: its answer was held`)
    }
    assert.match(failed.body.message ?? '', /^event \d+: Redis did not answer in time.*\. \d+ of 10 events were stored, \d+ (was|were) not, \d+ may be: retry the batch with the same idempotency keys$/)

    const retried = await publishBatch(url, { events })
    assert.equal(retried.status, 202, JSON.stringify(retried.body))
    for (const [index, outcome] of (retried.body.events ?? []).entries()) {
      const before = outcomes[index] as EventOutcome
      if (before.status === 'stored') assert.deepEqual(outcome, { ids: before.ids, topics: before.topics, duplicate: true }, `event ${index}`)
      // Redis ran the calls whose answers were held: the retry finds them.
      else assert.equal(outcome.duplicate, true, `event ${index} was stored although its answer never came`)
    }
    await watcher.waitForEvents(11)
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.deepEqual(payloads(watcher.events).slice(1).map((data) => (data as { index: number }).index), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 'each event once, in batch order')
  })
})

test('the batch route is documented: its statuses and codes, and real answers match their schemas', async (t) => {
  const { url } = await build(t, { HERALD_JWT_SECRET: SECRET, HERALD_MAX_BATCH_EVENTS: '3', HERALD_MAX_BODY_BYTES: '1024' })
  const document = await (await fetch(`${url}/openapi.json`)).json() as {
    paths: Record<string, Record<string, { summary?: string, requestBody: { content: Record<string, { schema: object, examples: Record<string, { value: unknown }> }> }, responses: Record<string, { content?: Record<string, { schema: object, examples?: Record<string, { value: unknown }> }> }> }>>
  }
  const operation = document.paths['/v1/events/batch']?.post
  assert.ok(operation !== undefined, 'POST /v1/events/batch is documented')
  assert.deepEqual(Object.keys(operation.responses).sort(), ['202', '400', '401', '403', '413', '415', '429', '503'])
  const ajv = new Ajv2020({ strict: true, allErrors: true })
  ajv.addKeyword('example')
  const matches = (schema: object, value: unknown, what: string) => {
    const check = ajv.compile(schema)
    assert.ok(check(value), `${what}: ${ajv.errorsText(check.errors)} in ${JSON.stringify(value)}`)
  }
  const body = operation.requestBody.content['application/json']
  assert.ok(body !== undefined)
  for (const [name, example] of Object.entries(body.examples)) {
    // The examples are valid batches at the default limit; this instance allows 3 events.
    assert.ok((example.value as { events: unknown[] }).events.length <= 3, name)
    matches(body.schema, example.value, `request example ${name}`)
  }
  for (const [status, reply] of Object.entries(operation.responses)) {
    for (const [name, example] of Object.entries(reply.content?.['application/json']?.examples ?? {})) matches(reply.content?.['application/json']?.schema as object, example.value, `${status} example ${name}`)
  }

  const publisher = { authorization: `Bearer ${token({ publish: ['chat/*'] })}` }
  const answers = [
    await publishBatch(url, { events: [{ topic: 'chat/a', data: 1 }] }, publisher),
    await publishBatch(url, { events: [{ topic: 'chat/a', data: 1 }, { topic: 'chat/a' }] }, publisher),
    await publishBatch(url, { events: [{ topic: 'chat/a', data: 1 }] }),
    await publishBatch(url, { events: [{ topic: 'chat/a', data: 1 }, { topic: 'billing', data: 1 }] }, publisher),
    await publishBatch(url, { events: Array(4).fill({ topic: 'chat/a', data: 1 }) }, publisher),
    await publishBatch(url, { events: [{ topic: 'chat/a', data: 'x'.repeat(2000) }] }, publisher)
  ]
  assert.deepEqual(answers.map((answer) => answer.status), [202, 400, 401, 403, 413, 413])
  for (const answer of answers) {
    const schema = operation.responses[String(answer.status)]?.content?.['application/json']?.schema
    assert.ok(schema !== undefined, `${answer.status} is documented`)
    matches(schema, answer.body, `a ${answer.status} answer`)
  }
})

test('HERALD_RATE_LIMIT_PER_MINUTE counts each event\'s topics, from the budget POST /v1/events counts against too', async (t) => {
  const { url } = await build(t, { HERALD_RATE_LIMIT_PER_MINUTE: '6' })
  // 1 + 2 (a repeated topic counts once) + 1 topic-events.
  const batch = { events: [{ topic: 'r', data: 1 }, { topic: ['r', 's', 'r'], data: 2 }, { topic: 's', data: 3 }] }
  assert.equal((await publishBatch(url, batch)).status, 202)
  assert.equal((await publish(url, { topic: 'r', data: 4 })).status, 202, 'five of six spent')
  const limited = await publishBatch(url, batch)
  assert.equal(limited.status, 429)
  assert.equal(limited.body.code, 'HERALD_RATE_LIMITED')
  assert.ok(Number(limited.headers.get('retry-after')) > 0)
  const small = await build(t, { HERALD_RATE_LIMIT_PER_MINUTE: '3' })
  const never = await publishBatch(small.url, batch)
  assert.equal(never.status, 429)
  assert.match(never.body.message ?? '', /names 4 topics, more than the 3 topic-events per minute/)
  assert.equal(never.headers.get('retry-after'), null, 'waiting would not help')
})

test('a batch outcome says stored, partial, not-stored or unknown, and per topic: a timed-out, cut-off or unreadable call may be stored', () => {
  const inputs: PublishInput[] = [['a'], ['b'], ['c'], ['d', 'e'], ['f', 'g', 'h'], ['i'], ['j']].map((topics) => ({ topics, data: '1' }))
  const unreachable = new BrokerUnavailableError('Redis is unreachable; the event was not stored', { cause: new Error("Stream isn't writeable and enableOfflineQueue options is false") })
  const closedMidCall = new BrokerUnavailableError('the connection to Redis closed before its answer', { cause: new Error('Connection is closed.') })
  const timedOut = new BrokerUnavailableError('Redis did not answer in time', { cause: new Error('Command timed out') })
  const stored: PublishResult = { ids: ['x-1'], topics: ['a'], duplicate: false }
  const described = describeOutcomes(inputs, [
    { result: stored },
    { error: unreachable },
    { error: timedOut },
    { error: unreachable, byTopic: [{ topic: 'd', id: 'x-4', duplicate: true }, { topic: 'e', error: unreachable }] },
    { error: unreachable, byTopic: [{ topic: 'f', error: unreachable }, { topic: 'g', error: timedOut }, { topic: 'h', error: unreachable }] },
    { error: unexpectedPublishReply() },
    { error: closedMidCall }
  ])
  assert.deepEqual(described.events, [
    { status: 'stored', ids: ['x-1'], topics: ['a'], duplicate: false },
    { status: 'not-stored', byTopic: [{ topic: 'b', status: 'not-stored' }] },
    { status: 'unknown', byTopic: [{ topic: 'c', status: 'unknown' }] },
    { status: 'partial', byTopic: [{ topic: 'd', status: 'stored', id: 'x-4', duplicate: true }, { topic: 'e', status: 'not-stored' }] },
    { status: 'unknown', byTopic: [{ topic: 'f', status: 'not-stored' }, { topic: 'g', status: 'unknown' }, { topic: 'h', status: 'not-stored' }] },
    { status: 'unknown', byTopic: [{ topic: 'i', status: 'unknown' }] },
    { status: 'unknown', byTopic: [{ topic: 'j', status: 'unknown' }] }
  ])
  assert.deepEqual(described.failure, { index: 1, error: unreachable }, 'the first failure is the one the reply names')
  const partly = describeOutcomes(inputs.slice(3, 4), [{ error: unreachable, byTopic: [{ topic: 'd', id: 'x-4', duplicate: true }, { topic: 'e', error: unreachable }] }])
  assert.deepEqual(partly.failure, { index: 0, topic: 'e', error: unreachable }, 'an event of several topics: the topic it failed on')
  assert.equal(describeOutcomes(inputs.slice(0, 1), [{ result: stored }]).failure, undefined)
})

test('the batch validator names the first bad event, and walks no further than it', () => {
  const validate = compileBatchValidator(publishBatchBody(1000), 'events')
  const events: unknown[] = Array.from({ length: 1000 }, (_, index) => ({ topic: `t/${index}`, data: index }))
  assert.deepEqual(validate({ events }), { value: { events } })
  events[700] = { topic: 'bad topic', data: 1 }
  events[300] = { topic: 't', data: 1, extra: true }
  const result = validate({ events }) as { error: Array<{ instancePath: string, schemaPath: string }> }
  assert.ok(result.error.length > 0)
  for (const error of result.error) {
    assert.match(error.instancePath, /^\/events\/300(\/|$)/, 'only the first bad event is described')
    assert.match(error.schemaPath, /^#\/properties\/events\/items/, 'paths of the whole body\'s schema')
  }
  const whole = validate({ events: [], more: 1 }) as { error: Array<{ instancePath: string }> }
  assert.ok(whole.error.length > 0, 'errors outside the events are the whole body\'s')
})
