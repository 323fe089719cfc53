import assert from 'node:assert/strict'
import { test } from 'node:test'
import { EventSource } from 'eventsource'
import fc from 'fast-check'
import { MAX_DATA_DEPTH, nestsDeeperThan } from '../src/json-depth.js'
import { MAX_STREAM_ID_LENGTH } from '../src/schemas.js'
import type { ParsedEvent } from '../src/sse/parser.js'
import { build, publish, until } from './helper.js'
import { RedisServer } from './helpers/redis-server.js'
import { openStream, payloads } from './helpers/sse-client.js'
import { seq } from './helpers/event-ids.js'

interface Hostile {
  name: string
  body: string | Buffer
  contentType?: string
}

/** A generated corpus of malformed publish requests; each must get a 4xx JSON error and change nothing. */
function corpus (): Hostile[] {
  const cases: Hostile[] = []
  const add = (name: string, body: string | Buffer, contentType?: string) => cases.push(contentType === undefined ? { name, body } : { name, body, contentType })
  const valid = JSON.stringify({ topic: 'news', data: { headline: 'ok', tags: ['a', 'b'], n: 1 }, type: 'story', retry: 1000 })

  // Truncated JSON: every cut of a valid body.
  for (let cut = 1; cut < valid.length; cut++) add(`truncated at ${cut}`, valid.slice(0, cut))
  // Deep nesting, in data and where objects do not belong.
  for (const depth of [MAX_DATA_DEPTH + 1, 1_000, 20_000]) {
    add(`data nested ${depth} arrays`, `{"topic":"a","data":${'['.repeat(depth)}${']'.repeat(depth)}}`)
    add(`data nested ${depth} objects`, `{"topic":"a","data":${'{"k":'.repeat(depth)}1${'}'.repeat(depth)}}`)
  }
  add('topic nested', `{"topic":${'['.repeat(100)}"a"${']'.repeat(100)},"data":1}`)
  // Huge strings and arrays.
  add('huge data string', JSON.stringify({ topic: 'a', data: 'x'.repeat(100_000) }))
  add('huge topic', JSON.stringify({ topic: 'a'.repeat(10_000), data: 1 }))
  add('huge type', JSON.stringify({ topic: 'a', data: 1, type: 't'.repeat(1_000) }))
  add('too many topics', JSON.stringify({ topic: Array.from({ length: 65 }, (_, index) => `t${index}`), data: 1 }))
  // Wrong types in every field.
  const wrongValues: unknown[] = [null, true, 0, 1.5, -1, '', [], {}, [1], { a: 1 }]
  for (const value of wrongValues) {
    if (typeof value !== 'string' || value === '') add(`topic = ${JSON.stringify(value)}`, JSON.stringify({ topic: value, data: 1 }))
    if (typeof value !== 'string' || value === '') add(`type = ${JSON.stringify(value)}`, JSON.stringify({ topic: 'a', data: 1, type: value }))
    if (!(typeof value === 'number' && Number.isInteger(value) && value >= 0)) add(`retry = ${JSON.stringify(value)}`, JSON.stringify({ topic: 'a', data: 1, retry: value }))
    if (typeof value !== 'string' || value === '') add(`idempotencyKey = ${JSON.stringify(value)}`, JSON.stringify({ topic: 'a', data: 1, idempotencyKey: value }))
  }
  for (const top of ['null', 'true', '1', '"text"', '[]', '[{"topic":"a","data":1}]']) add(`body ${top}`, top)
  add('missing data', JSON.stringify({ topic: 'a' }))
  add('missing topic', JSON.stringify({ data: 1 }))
  add('empty object', '{}')
  add('empty body', '')
  // CR, LF and NUL in every field that is framed or keyed, and in field names.
  for (const bad of ['\r', '\n', '\r\n', '\u0000', '\u001b', '\u007f']) {
    const shown = JSON.stringify(bad)
    add(`topic with ${shown}`, JSON.stringify({ topic: `a${bad}data: injected`, data: 1 }))
    add(`topic list with ${shown}`, JSON.stringify({ topic: ['ok', `b${bad}`], data: 1 }))
    add(`type with ${shown}`, JSON.stringify({ topic: 'a', data: 1, type: `x${bad}event: evil` }))
    add(`idempotencyKey with ${shown}`, JSON.stringify({ topic: 'a', data: 1, idempotencyKey: `k${bad}` }))
    add(`field name with ${shown}`, `{"topic":"a","data":1,"x${JSON.stringify(bad).slice(1, -1)}":2}`)
  }
  // Unicode edge cases in names that must stay within their character sets.
  for (const odd of ['é', '日本', '😀', '\u200b', '\u202e', '\ufeff', '\ud800', 'Ａ', '\u2028']) {
    add(`topic with ${JSON.stringify(odd)}`, JSON.stringify({ topic: `a${odd}`, data: 1 }))
    add(`idempotencyKey with ${JSON.stringify(odd)}`, JSON.stringify({ topic: 'a', data: 1, idempotencyKey: `k${odd}` }))
  }
  add('invalid UTF-8 bytes', Buffer.concat([Buffer.from('{"topic":"a'), Buffer.from([0xff, 0xfe]), Buffer.from('","data":1}')]))
  add('BOM then JSON', '\ufeff{"topic":"a","data":1,"x":1}')
  // Prototype pollution.
  for (const key of ['__proto__', 'constructor']) {
    add(`${key} at the top`, `{"topic":"a","data":1,"${key}":{"polluted":true,"prototype":{"polluted":true}}}`)
    add(`${key} inside data`, `{"topic":"a","data":{"${key}":{"polluted":true,"prototype":{"polluted":true}}}}`)
  }
  // Unknown fields and JSON oddities.
  add('extra field', JSON.stringify({ topic: 'a', data: 1, extra: true }))
  add('NaN', '{"topic":"a","data":NaN}')
  add('comments', '{"topic":"a", /* c */ "data":1}')
  add('single quotes', "{'topic':'a','data':1}")
  add('trailing comma', '{"topic":"a","data":1,}')
  add('two documents', '{"topic":"a","data":1}{"topic":"a","data":2}')
  // Herald's own in-band event types cannot be forged.
  for (const type of ['herald.reset', 'herald.', 'herald.anything']) add(`type ${type}`, JSON.stringify({ topic: 'a', data: 1, type }))
  // Wrong content types, including those a cross-site form or fetch may send without a preflight.
  for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', 'application/octet-stream',
    'text/plain; charset=application/json', 'text/plain;application/json', 'application/x-www-form-urlencoded; a=application/json',
    'text/plain, application/json', 'application/jsonx', 'application/json-patch+json']) {
    add(`content-type ${type}`, valid, type)
  }
  return cases
}

test('a corpus of 200+ hostile publishes: each a 4xx with a JSON reason, nothing stored or sent, service unharmed', { timeout: 60_000 }, async (t) => {
  const { url } = await build(t)
  const watcher = await openStream(`${url}/v1/stream?topic=a&topic=news&topic=ok`)
  t.after(watcher.close)
  const cases = corpus()
  assert.ok(cases.length >= 200, `corpus has ${cases.length} cases`)
  const first = await publish(url, { topic: 'a', data: 'first' })
  const statuses = new Map<number, number>()
  const newsIds: string[] = []
  let index = 0
  for (const hostile of cases) {
    const response = await fetch(`${url}/v1/events`, {
      method: 'POST',
      headers: { 'content-type': hostile.contentType ?? 'application/json' },
      body: hostile.body
    })
    statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1)
    assert.ok(response.status >= 400 && response.status < 500, `${hostile.name}: ${response.status}`)
    assert.match(response.headers.get('content-type') ?? '', /application\/json/, hostile.name)
    const body = await response.json() as { statusCode: number, message: string }
    assert.equal(body.statusCode, response.status, hostile.name)
    assert.ok(body.message.length > 0, hostile.name)
    // Valid events interleaved with the attack still flow to the concurrent subscriber.
    if (++index % 50 === 0) {
      const reply = await publish(url, { topic: 'news', data: index })
      assert.equal(reply.status, 202)
      newsIds.push(reply.body.id as string)
    }
  }
  const last = await publish(url, { topic: 'a', data: 'last' })
  const validCount = 2 + Math.floor(cases.length / 50)
  // Each topic numbers its own events: hostile requests between them spent no number on either.
  assert.equal(seq(last.body.id), seq(first.body.id) + 1, 'no id was spent on a hostile request (topic a)')
  assert.deepEqual(newsIds.map(seq), newsIds.map((_, position) => position + 1), 'no id was spent on a hostile request (topic news)')
  await watcher.waitForEvents(validCount)
  // Time for an event from a hostile request, which should not come, to arrive.
  await new Promise((resolve) => setTimeout(resolve, 50))
  assert.equal(watcher.events.length, validCount)
  assert.deepEqual(payloads(watcher.events).at(-1), 'last')
  assert.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype was polluted')
  assert.equal((await fetch(`${url}/health`)).status, 200)
  t.diagnostic(`corpus: ${cases.length} requests, statuses ${JSON.stringify(Object.fromEntries(statuses))}`)
})

test('hostile stream requests: each a 4xx with a JSON reason before any stream byte, and the service unharmed', async (t) => {
  const { url } = await build(t, { HERALD_MAX_TOPICS_PER_STREAM: '4' })
  const watcher = await openStream(`${url}/v1/stream?topic=a`)
  t.after(watcher.close)
  const queries = [
    '', 'topic=', 'topic=%0d%0adata:%20x', 'topic=a%0ab', 'topic=a%00', 'topic=a%20b', 'topic=%E2%80%A8', 'topic=%ff%fe',
    `topic=${'a'.repeat(257)}`, 'topic=a&topic=', 'topic=a&topic=b&topic=c&topic=d&topic=e',
    `topic=a&lastEventId=${'9'.repeat(MAX_STREAM_ID_LENGTH + 1)}`, `topic=a&access_token=${'x'.repeat(8193)}`, 'topic=a&access_token=1&access_token=2',
    'topic=a&lastEventId=1&lastEventId=2', 'topic[]=a', 'topic[__proto__]=a', '__proto__[topic]=a', 'constructor=a'
  ]
  for (const query of queries) {
    const client = await openStream(`${url}/v1/stream?${query}`)
    client.close()
    assert.ok(client.status >= 400 && client.status < 500, `${query}: ${client.status}`)
    assert.match(String(client.headers['content-type']), /application\/json/, query)
    const body = JSON.parse(client.text()) as { statusCode: number, message: string }
    assert.equal(body.statusCode, client.status, query)
    assert.ok(body.message.length > 0, query)
  }
  // Extra parameters are allowed (cache busters), and hostile ones change nothing.
  const extra = await openStream(`${url}/v1/stream?topic=a&_=123&__proto__=x&constructor=y`)
  extra.close()
  assert.equal(extra.status, 200)
  assert.equal((await publish(url, { topic: 'a', data: 'still here' })).status, 202)
  assert.deepEqual(payloads(await watcher.waitForEvents(1)), ['still here'])
  assert.equal(({} as Record<string, unknown>).topic, undefined, 'no prototype was polluted')
})

test('property: any JSON data round-trips to an eventsource client unchanged and adds no SSE field', { timeout: 60_000 }, async (t) => {
  const { url } = await build(t)
  // A raw reader of the same stream, to check every line on the wire.
  const raw = await openStream(`${url}/v1/stream?topic=prop`)
  t.after(raw.close)
  const source = new EventSource(`${url}/v1/stream?topic=prop`)
  t.after(() => source.close())
  const received: unknown[] = []
  const otherTypes: string[] = []
  source.addEventListener('message', (event) => received.push(JSON.parse(event.data)))
  for (const type of ['injected', 'evil', 'x', 'herald.reset']) source.addEventListener(type, () => otherTypes.push(type))
  await new Promise((resolve, reject) => { source.onopen = resolve; source.onerror = reject })

  // Strings rich in line breaks and field-like text, inside any JSON shape. NUL is the point here:
  // eslint-disable-next-line no-control-regex
  const hostileText = fc.stringMatching(/^(\r|\n|\r\n|\u0000|data: |event: evil|id: 9|retry: 1|: |[a-z]|\u2028|😀)*$/)
  const value = fc.letrec((tie) => ({
    node: fc.oneof({ depthSize: 'small' }, hostileText, fc.string(), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null),
      fc.array(tie('node'), { maxLength: 4 }), fc.dictionary(hostileText, tie('node'), { maxKeys: 4 }))
  })).node.filter((candidate) => !nestsDeeperThan(candidate, MAX_DATA_DEPTH))

  let sent = 0
  await fc.assert(fc.asyncProperty(value, async (data) => {
    const reply = await publish(url, { topic: 'prop', data })
    assert.equal(reply.status, 202)
    sent++
    await until(() => received.length === sent, 5_000, `event ${sent}`)
    // What JSON can carry: -0 becomes 0 and dictionary keys like __proto__ are plain keys after JSON.parse.
    assert.deepEqual(received.at(-1), JSON.parse(JSON.stringify(data)))
  }), { numRuns: 150 })
  assert.deepEqual(otherTypes, [], 'no event type was injected')
  // Each event is exactly one id line and its data lines: no field a payload could have added.
  await raw.waitForEvents(sent)
  const lines = raw.text().split('\n')
  const fieldNames = new Set(lines.filter((line) => line !== '' && !line.startsWith(':')).map((line) => line.slice(0, line.indexOf(':'))))
  assert.deepEqual([...fieldNames].sort(), ['data', 'id', 'retry'])
  assert.equal(lines.filter((line) => line.startsWith('id:')).length, sent)
  assert.equal(lines.filter((line) => line.startsWith('retry:')).length, 1, 'only the opening retry')
  assert.ok(!raw.text().includes('\r') && !raw.text().includes('\u0000'), 'no CR or NUL reaches the wire')
  assert.deepEqual(raw.events.map((event) => JSON.parse(event.data)), received)
  t.diagnostic(`${sent} generated payloads round-tripped`)
})

test('property: raw CR, LF and CRLF in data published through the Redis function reach the wire as data lines only, live and replayed', { timeout: 60_000 }, async (t) => {
  // JSON.stringify escapes line breaks, so HTTP publishes never put a raw one in data. A backend calling the
  // publish function directly (docs/publishing-from-redis.md) can: pretty-printed JSON has raw line breaks.
  const redis = await RedisServer.start()
  t.after(async () => await redis.stop())
  const prefix = 'wire:'
  const { url } = await build(t, { REDIS_URL: redis.url, HERALD_REDIS_PREFIX: prefix })
  const backend = redis.client()
  t.after(() => backend.disconnect())
  const live = await openStream(`${url}/v1/stream?topic=wire`)
  t.after(live.close)
  await until(async () => Number((await backend.pubsub('SHARDNUMSUB', `${prefix}{wire}`) as [string, number])[1]) === 1, 5_000, 'subscribed in Redis')

  // Pretty-printed JSON whose line breaks are CR, LF or CRLF (all JSON whitespace), with values that look like SSE fields.
  const text = fc.tuple(
    fc.array(fc.oneof(fc.constantFrom('data: x', 'event: evil', 'id: 9', 'retry: 1', ': c'), fc.string({ maxLength: 6 }), fc.integer()), { minLength: 1, maxLength: 6 }),
    fc.constantFrom('\r', '\n', '\r\n')
  ).map(([values, lineBreak]) => JSON.stringify(values, null, 1).replaceAll('\n', lineBreak))
  const sent: Array<{ id: string, data: string }> = []
  // The opening `retry:` line applies to every later event; here only id, type and data matter.
  const seen = (event: ParsedEvent | undefined) => event === undefined ? undefined : { id: event.id, event: event.event, data: event.data }
  await fc.assert(fc.asyncProperty(text, async (data) => {
    const [id] = await backend.fcall('wire_v1_publish', 2, `${prefix}{wire}:m`, `${prefix}{wire}:h`, data) as [string, number]
    sent.push({ id: String(id), data })
    await live.waitForEvents(sent.length)
    assert.deepEqual(seen(live.events.at(-1)), { id: String(id), event: 'message', data: data.replace(/\r\n|\r/g, '\n') })
  }), { numRuns: 150 })

  const expected = sent.map(({ id, data }) => ({ id, event: 'message', data: data.replace(/\r\n|\r/g, '\n') }))
  assert.deepEqual(live.events.map(seen), expected)
  // The same bytes come out of history for a client that resumes from the start.
  const replayed = await openStream(`${url}/v1/stream?topic=wire&lastEventId=0`)
  t.after(replayed.close)
  assert.deepEqual((await replayed.waitForEvents(sent.length)).map(seen), expected)
  for (const client of [live, replayed]) {
    const lines = client.text().split('\n')
    const fieldNames = new Set(lines.filter((line) => line !== '' && !line.startsWith(':')).map((line) => line.slice(0, line.indexOf(':'))))
    assert.deepEqual([...fieldNames].sort(), ['data', 'id', 'retry'])
    assert.ok(!client.text().includes('\r'), 'no CR reaches the wire')
  }
})
