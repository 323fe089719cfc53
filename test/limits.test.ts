import assert from 'node:assert/strict'
import { test } from 'node:test'
import { loadConfig } from '../src/config.js'
import { build, publish, until } from './helper.js'
import { EventSource } from 'eventsource'
import { openStream, type StreamClient } from './helpers/sse-client.js'
import { SECRET, token } from './helpers/tokens.js'

test('body size: exactly the limit is accepted, one byte more is 413', async (t) => {
  const { url } = await build(t, { HERALD_MAX_BODY_BYTES: '2048' })
  const bodyOfSize = (size: number) => {
    const shell = JSON.stringify({ topic: 'a', data: '' })
    return JSON.stringify({ topic: 'a', data: 'x'.repeat(size - shell.length) })
  }
  assert.equal(Buffer.byteLength(bodyOfSize(2048)), 2048)
  assert.equal((await publish(url, bodyOfSize(2048))).status, 202)
  const over = await publish(url, bodyOfSize(2049))
  assert.equal(over.status, 413)
  assert.match(over.body.message, /too large/i)
})

test('topics per stream: N allowed, N+1 is 400', async (t) => {
  const { url } = await build(t, { HERALD_MAX_TOPICS_PER_STREAM: '3' })
  const query = (count: number) => Array.from({ length: count }, (_, index) => `topic=t${index}`).join('&')
  const ok = await openStream(`${url}/v1/stream?${query(3)}`)
  ok.close()
  assert.equal(ok.status, 200)
  const tooMany = await openStream(`${url}/v1/stream?${query(4)}`)
  assert.equal(tooMany.status, 400)
  assert.match(tooMany.text(), /at most 3 topics/)
})

/** A refusal as EventSource sees it: 200, a jittered `retry:`, one `herald.unavailable` event, then the end. */
function assertRefused (stream: StreamClient, reason: string, baseMs: number): void {
  assert.equal(stream.status, 200)
  assert.match(String(stream.headers['content-type']), /^text\/event-stream/)
  assert.equal(stream.ended(), true, 'the refusal ends the stream, so EventSource retries')
  const retry = Number(/^retry: (\d+)$/m.exec(stream.text())?.[1])
  assert.ok(retry >= baseMs / 2 && retry <= baseMs * 1.5, `retry ${retry} jittered around ${baseMs}`)
  assert.equal(stream.events.length, 1)
  assert.equal(stream.events[0]?.event, 'herald.unavailable')
  assert.deepEqual(JSON.parse(stream.events[0]?.data ?? ''), { reason, retryMs: retry })
}

test('concurrent streams per instance: N allowed, N+1 is refused in band (200, retry, herald.unavailable), and a slot frees on close', async (t) => {
  const { app, url } = await build(t, { HERALD_MAX_CONNECTIONS: '3' })
  const streams = await Promise.all([1, 2, 3].map(async () => await openStream(`${url}/v1/stream?topic=a`)))
  t.after(() => { for (const stream of streams) stream.close() })
  assert.deepEqual(streams.map((stream) => stream.status), [200, 200, 200])
  const refused = await openStream(`${url}/v1/stream?topic=a`)
  await until(() => refused.ended(), 2_000, 'the refusal to end')
  assertRefused(refused, 'instance-full', 5_000)
  assert.equal(app.hub.streamCount, 3)
  streams[0]?.close()
  await until(() => app.hub.streamCount === 2, 2_000, 'a slot to free')
  const again = await openStream(`${url}/v1/stream?topic=a`)
  again.close()
  assert.equal(again.status, 200)
  assert.equal(again.events.length, 0)
})

test('streams per client address: N allowed, N+1 refused in band; behind a trusted proxy each forwarded address has its own', async (t) => {
  const { app, url } = await build(t, { HERALD_MAX_STREAMS_PER_ADDRESS: '2', HERALD_TRUST_PROXY: '127.0.0.1' })
  const open = async (address: string) => await openStream(`${url}/v1/stream?topic=a`, { 'x-forwarded-for': address })
  const streams = [await open('203.0.113.1'), await open('203.0.113.1')]
  t.after(() => { for (const stream of streams) stream.close() })
  const refused = await open('203.0.113.1')
  await until(() => refused.ended(), 2_000, 'the refusal to end')
  assertRefused(refused, 'address-limit', 10_000)
  const other = await open('203.0.113.2')
  streams.push(other)
  assert.equal(other.ended(), false, 'another address has its own budget')
  assert.equal(app.hub.streamCount, 3)
  streams[0]?.close()
  await until(() => app.hub.streamCount === 2, 2_000, 'a slot to free')
  const again = await open('203.0.113.1')
  streams.push(again)
  assert.equal(again.ended(), false, 'the address got its slot back')
  assert.equal(app.hub.streamCount, 3)
})

test('streams per verified token subject: N allowed, N+1 refused in band; another subject and anonymous streams are not counted', async (t) => {
  const { app, url } = await build(t, { HERALD_JWT_SECRET: SECRET, HERALD_MAX_STREAMS_PER_SUBJECT: '2', HERALD_PRIVATE_TOPICS: 'private/**' })
  const as = (subject: string) => ({ authorization: `Bearer ${token({ subscribe: ['**'], subject })}` })
  const streams = [await openStream(`${url}/v1/stream?topic=a`, as('alice')), await openStream(`${url}/v1/stream?topic=a`, as('alice'))]
  t.after(() => { for (const stream of streams) stream.close() })
  const refused = await openStream(`${url}/v1/stream?topic=a`, as('alice'))
  await until(() => refused.ended(), 2_000, 'the refusal to end')
  assertRefused(refused, 'subject-limit', 10_000)
  streams.push(await openStream(`${url}/v1/stream?topic=a`, as('bob')), await openStream(`${url}/v1/stream?topic=a`))
  assert.equal(app.hub.streamCount, 4)
  // A token that does not verify buys no budget, and on a public topic it is not needed: counted by address only.
  const forged = await openStream(`${url}/v1/stream?topic=a`, { authorization: `Bearer ${token({ subscribe: ['**'], subject: 'alice', key: 'not-the-secret-but-long-enough-0123456789' })}` })
  streams.push(forged)
  assert.equal(forged.ended(), false)
  // 401 and 403 stay plain statuses, even for a subject at its cap: the client must change something.
  assert.equal((await openStream(`${url}/v1/stream?topic=private/x`)).status, 401)
  const narrow = { authorization: `Bearer ${token({ subscribe: ['a'], subject: 'alice' })}` }
  assert.equal((await openStream(`${url}/v1/stream?topic=private/x`, narrow)).status, 403)
})

test('EventSource retries a refused stream and gets through once a slot frees', { timeout: 30_000 }, async (t) => {
  const { app, url } = await build(t, { HERALD_MAX_CONNECTIONS: '1' })
  const holder = await openStream(`${url}/v1/stream?topic=a`)
  t.after(() => holder.close())
  const source = new EventSource(`${url}/v1/stream?topic=a`)
  t.after(() => source.close())
  const refusals: Array<{ reason: string, retryMs: number }> = []
  const received: string[] = []
  source.addEventListener('herald.unavailable', (event) => refusals.push(JSON.parse(event.data)))
  source.addEventListener('message', (event) => received.push(event.data))
  await until(() => refusals.length >= 1, 5_000, 'a refusal')
  const refusedAt = performance.now()
  holder.close()
  await until(() => app.hub.streamCount === 1 && source.readyState === EventSource.OPEN, 15_000, 'EventSource to reconnect')
  // The reconnected stream is subscribed once its first bytes arrived (OPEN); an event now reaches it.
  await until(async () => (await publish(url, { topic: 'a', data: 'through' })).status === 202 && received.length > 0, 5_000, 'an event')
  assert.deepEqual(refusals.map((refusal) => refusal.reason), ['instance-full'])
  assert.equal(received[0], '"through"')
  t.diagnostic(`EventSource was refused once (retry ${refusals[0]?.retryMs} ms) and got through ${(performance.now() - refusedAt).toFixed(0)} ms after the slot freed`)
})

test('publish rate without a key: N per minute per address, N+1 is 429 with Retry-After; tokens open no new budget', async (t) => {
  const { url } = await build(t, { HERALD_RATE_LIMIT_PER_MINUTE: '5' })
  for (let index = 0; index < 5; index++) assert.equal((await publish(url, { topic: 'a', data: index })).status, 202)
  const limited = await fetch(`${url}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"topic":"a","data":6}' })
  assert.equal(limited.status, 429)
  assert.ok(Number(limited.headers.get('retry-after')) > 0)
  const body = await limited.json() as { statusCode: number, error: string, code: string, message: string }
  assert.deepEqual({ statusCode: body.statusCode, error: body.error, code: body.code }, { statusCode: 429, error: 'Too Many Requests', code: 'HERALD_RATE_LIMITED' })
  assert.match(body.message, /at most 5 topic-events \(an event to N topics counts N\) per minute/)
  // Open mode checks no token, so a made-up one cannot buy a fresh budget.
  assert.equal((await publish(url, { topic: 'a', data: 7 }, { authorization: 'Bearer some.other.publisher' })).status, 429)
  const stream = await openStream(`${url}/v1/stream?topic=a`)
  stream.close()
  assert.equal(stream.status, 200, 'streams are not rate limited')
})

test('publish rate with a key: each verified subject has its own budget; forged or bad tokens count against the address', async (t) => {
  const { url } = await build(t, { HERALD_JWT_SECRET: SECRET, HERALD_RATE_LIMIT_PER_MINUTE: '3' })
  const as = (value: string) => ({ authorization: `Bearer ${value}` })
  const alice = [token({ publish: ['**'], subject: 'alice' }), token({ publish: ['**'], subject: 'alice', expiresIn: 7200 })]
  const bob = token({ publish: ['**'], subject: 'bob' })
  // Two tokens of one subject share its budget: 3 allowed, the 4th refused.
  const aliceStatuses = []
  for (let index = 0; index < 4; index++) aliceStatuses.push((await publish(url, { topic: 'a', data: index }, as(alice[index % 2] as string))).status)
  assert.deepEqual(aliceStatuses, [202, 202, 202, 429])
  assert.equal((await publish(url, { topic: 'a', data: 'bob' }, as(bob))).status, 202, 'another subject keeps its budget')

  // Tokens that do not verify (a new one each time) all count against the address: 3 refusals, then 429.
  const forged = []
  for (let index = 0; index < 4; index++) {
    forged.push((await publish(url, { topic: 'a', data: index }, as(token({ publish: ['**'], subject: `forged${index}`, key: 'not-the-secret-but-long-enough-0123456789' })))).status)
  }
  assert.deepEqual(forged, [401, 401, 401, 429])
  // A valid token without a subject is keyed by its address too, which is now spent.
  assert.equal((await publish(url, { topic: 'a', data: 'anonymous' }, as(token({ publish: ['**'], subject: null })))).status, 429)
})

test('behind a trusted proxy the rate limit keys on X-Forwarded-For; from anyone else the header is ignored', async (t) => {
  assert.equal(loadConfig({}).trustProxy, false)
  assert.equal(loadConfig({ HERALD_TRUST_PROXY: 'true' }).trustProxy, true)
  assert.equal(loadConfig({ HERALD_TRUST_PROXY: '10.0.0.0/8, 127.0.0.1' }).trustProxy, '10.0.0.0/8, 127.0.0.1')
  assert.throws(() => loadConfig({ HERALD_TRUST_PROXY: 'yes please' }), /HERALD_TRUST_PROXY="yes please": expected true to take client addresses/)

  const from = (address: string) => ({ 'x-forwarded-for': address })
  const behind = await build(t, { HERALD_RATE_LIMIT_PER_MINUTE: '2', HERALD_TRUST_PROXY: '127.0.0.1' })
  const statuses = async (url: string, headers: Record<string, string>) => [
    (await publish(url, { topic: 'a', data: 1 }, headers)).status,
    (await publish(url, { topic: 'a', data: 2 }, headers)).status,
    (await publish(url, { topic: 'a', data: 3 }, headers)).status
  ]
  assert.deepEqual(await statuses(behind.url, from('203.0.113.1')), [202, 202, 429])
  assert.deepEqual(await statuses(behind.url, from('203.0.113.2')), [202, 202, 429], 'another client behind the proxy has its own budget')

  const direct = await build(t, { HERALD_RATE_LIMIT_PER_MINUTE: '2' })
  assert.deepEqual(await statuses(direct.url, from('203.0.113.1')), [202, 202, 429])
  assert.equal((await publish(direct.url, { topic: 'a', data: 4 }, from('203.0.113.2'))).status, 429, 'a forged X-Forwarded-For buys nothing')
})

test('topic names: 256 characters allowed, 257 is 400; charset enforced', async (t) => {
  const { url } = await build(t)
  assert.equal((await publish(url, { topic: 'a'.repeat(256), data: 1 })).status, 202)
  const long = await publish(url, { topic: 'a'.repeat(257), data: 1 })
  assert.equal(long.status, 400)
  assert.match(long.body.message, /topic/)
  assert.equal((await publish(url, { topic: 'AZaz09-_.~:@/', data: 1 })).status, 202)
  for (const bad of ['a b', 'a?b', 'a&b', 'a#b', 'a%20', 'a+b', 'é']) assert.equal((await publish(url, { topic: bad, data: 1 })).status, 400, bad)
  const streamOk = await openStream(`${url}/v1/stream?topic=${'a'.repeat(256)}`)
  streamOk.close()
  assert.equal(streamOk.status, 200)
  const streamLong = await openStream(`${url}/v1/stream?topic=${'a'.repeat(257)}`)
  assert.equal(streamLong.status, 400)
})

test('topics per event: 64 allowed, 65 is 400', async (t) => {
  const { url } = await build(t)
  const topics = (count: number) => Array.from({ length: count }, (_, index) => `t${index}`)
  assert.equal((await publish(url, { topic: topics(64), data: 1 })).status, 202)
  assert.equal((await publish(url, { topic: topics(65), data: 1 })).status, 400)
})

test('too many topics is refused by its count before any name is checked, naming the limit', async (t) => {
  const { url } = await build(t)
  // The schema checks each name first: it would report name 5,999 (here a bad one) of a 6,000-name body.
  for (const topic of [[...Array.from({ length: 5999 }, (_, index) => `t${index}`), 'not a name'], Array.from({ length: 6000 }, () => 7)]) {
    const refused = await publish(url, { topic, data: 1 })
    assert.equal(refused.status, 400)
    assert.equal(refused.body.code, 'FST_ERR_VALIDATION')
    assert.equal(refused.body.message, 'body/topic must name at most 64 topics; this one names 6000')
  }
})

test('the rate limit counts topic-events: an event to N topics costs N, repeats once', async (t) => {
  const { url } = await build(t, { HERALD_RATE_LIMIT_PER_MINUTE: '100' })
  const topics = (count: number, prefix = 't') => Array.from({ length: count }, (_, index) => `${prefix}${index}`)
  assert.equal((await publish(url, { topic: topics(64), data: 1 })).status, 202, '64 of 100')
  assert.equal((await publish(url, { topic: [...topics(30), ...topics(30)], data: 2 })).status, 202, '30 more (each repeated name once): 94 of 100')
  const limited = await publish(url, { topic: topics(7), data: 3 })
  assert.equal(limited.status, 429, '7 more would be 101')
  assert.equal(limited.body.code, 'HERALD_RATE_LIMITED')
  assert.match(limited.body.message, /at most 100 topic-events/)
  assert.equal((await publish(url, { topic: topics(5), data: 4 })).status, 202, 'the refused publish cost 1 (95): 5 more fit, 100 of 100')
  assert.equal((await publish(url, { topic: 'a', data: 5 })).status, 429)
})

test('a publish naming more topics than the whole rate limit is refused without a Retry-After', async (t) => {
  const { url } = await build(t, { HERALD_RATE_LIMIT_PER_MINUTE: '10' })
  const response = await fetch(`${url}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ topic: Array.from({ length: 11 }, (_, index) => `t${index}`), data: 1 }) })
  assert.equal(response.status, 429)
  assert.equal(response.headers.get('retry-after'), null, 'waiting cannot help')
  const body = await response.json() as { code: string, message: string }
  assert.deepEqual(body, { statusCode: 429, error: 'Too Many Requests', code: 'HERALD_RATE_LIMITED', message: 'this publish names 11 topics, more than the 10 topic-events per minute the rate limit allows' })
  assert.equal((await publish(url, { topic: Array.from({ length: 9 }, (_, index) => `t${index}`), data: 1 })).status, 202, 'the refused publish cost 1: 9 more fit')
})

test('event types: 128 characters allowed, 129 is 400; no control characters; herald.* is reserved', async (t) => {
  const { url } = await build(t)
  assert.equal((await publish(url, { topic: 'a', data: 1, type: 't'.repeat(128) })).status, 202)
  assert.equal((await publish(url, { topic: 'a', data: 1, type: 't'.repeat(129) })).status, 400)
  assert.equal((await publish(url, { topic: 'a', data: 1, type: 'chat.message:v2 (é)' })).status, 202)
  for (const bad of ['a\nb', 'a\rb', 'a\u0000b', 'a\tb', 'herald.reset', 'herald.anything']) {
    const refused = await publish(url, { topic: 'a', data: 1, type: bad })
    assert.equal(refused.status, 400, JSON.stringify(bad))
    assert.match(refused.body.message, /type/)
  }
  assert.equal((await publish(url, { topic: 'a', data: 1, type: 'heraldic' })).status, 202)
})
