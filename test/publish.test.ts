import assert from 'node:assert/strict'
import { test } from 'node:test'
import { build, publish } from './helper.js'
import { openStream, payloads } from './helpers/sse-client.js'
import { epochOf, seq } from './helpers/event-ids.js'

test('POST /v1/events answers 202 with the event\'s position on each topic', async (t) => {
  const { url } = await build(t)
  const one = await publish(url, { topic: 'a', data: { x: 1 } })
  const two = await publish(url, { topic: ['a', 'b', 'a'], data: null, type: 'update', retry: 1000 })
  assert.equal(one.status, 202)
  assert.equal(two.status, 202)
  // A position is `<epoch>-<seq>` of its topic: a base-36 epoch, then the sequence number within it.
  assert.match(one.body.id, /^[0-9a-z]{1,16}-1$/)
  assert.deepEqual(one.body, { ids: [one.body.id], id: one.body.id, topics: ['a'], duplicate: false }, 'one topic: `id` is its position')
  const [onA, onB] = two.body.ids as string[]
  assert.equal(onA, `${epochOf(one.body.id)}-2`, 'the second event on a')
  assert.match(onB as string, /^[0-9a-z]{1,16}-1$/, 'the first event on b, numbered by b')
  assert.deepEqual(two.body, { ids: [onA, onB], topics: ['a', 'b'], duplicate: false }, 'topics are de-duplicated; no `id` for several topics')
})

test('an idempotency key in the body or the Idempotency-Key header publishes once', async (t) => {
  const { url } = await build(t)
  const client = await openStream(`${url}/v1/stream?topic=orders`)
  t.after(client.close)
  const first = await publish(url, { topic: 'orders', data: 1, idempotencyKey: 'k-1' })
  const retried = await publish(url, { topic: 'orders', data: 1, idempotencyKey: 'k-1' })
  const header = await publish(url, { topic: 'orders', data: 2 }, { 'idempotency-key': 'k-2' })
  const headerRetried = await publish(url, { topic: 'orders', data: 2 }, { 'idempotency-key': 'k-2' })
  assert.deepEqual(retried.body, { ...first.body, duplicate: true })
  assert.equal(headerRetried.body.id, header.body.id)
  const sentinel = await publish(url, { topic: 'orders', data: 'end' })
  const events = await client.waitForEvents(3)
  assert.deepEqual(events.map((event) => event.id), [first.body.id, header.body.id, sentinel.body.id])
})

interface BadRequest {
  name: string
  body: string
  headers?: Record<string, string>
  status: number
  message: RegExp
}

const json = (value: unknown) => JSON.stringify(value)
const badRequests: BadRequest[] = [
  { name: 'malformed JSON', body: '{"topic": "a", "data": ', status: 400, message: /not valid JSON/ },
  { name: 'JSON that is not an object', body: '[1,2]', status: 400, message: /body must be object/ },
  { name: 'missing topic', body: json({ data: 1 }), status: 400, message: /must have 'topic'/ },
  { name: 'missing data', body: json({ topic: 'a' }), status: 400, message: /must have 'data'/ },
  { name: 'extra field', body: json({ topic: 'a', data: 1, colour: 'red' }), status: 400, message: /unknown 'colour'/ },
  { name: 'topic of the wrong type', body: json({ topic: 5, data: 1 }), status: 400, message: /body\/topic must be/ },
  { name: 'topic with a space', body: json({ topic: 'a b', data: 1 }), status: 400, message: /topic name/ },
  { name: 'topic with a line break', body: json({ topic: 'a\ndata: x', data: 1 }), status: 400, message: /topic name/ },
  { name: 'empty topic', body: json({ topic: '', data: 1 }), status: 400, message: /topic name/ },
  { name: 'topic too long', body: json({ topic: 'x'.repeat(257), data: 1 }), status: 400, message: /topic name/ },
  { name: 'empty topic list', body: json({ topic: [], data: 1 }), status: 400, message: /body\/topic must not have fewer than 1/ },
  { name: 'bad topic in a list', body: json({ topic: ['ok', 'not ok'], data: 1 }), status: 400, message: /body\/topic\/1 must be a topic name/ },
  { name: 'type with LF', body: json({ topic: 'a', data: 1, type: 'x\ndata: injected' }), status: 400, message: /body\/type must be an event type/ },
  { name: 'type with CR', body: json({ topic: 'a', data: 1, type: 'x\rid: 9' }), status: 400, message: /body\/type/ },
  { name: 'type with NUL', body: json({ topic: 'a', data: 1, type: 'x\u0000' }), status: 400, message: /body\/type/ },
  { name: 'type not a string', body: json({ topic: 'a', data: 1, type: 7 }), status: 400, message: /body\/type/ },
  { name: 'retry not an integer', body: json({ topic: 'a', data: 1, retry: 1.5 }), status: 400, message: /body\/retry/ },
  { name: 'retry negative', body: json({ topic: 'a', data: 1, retry: -1 }), status: 400, message: /body\/retry/ },
  { name: 'idempotency key with a space', body: json({ topic: 'a', data: 1, idempotencyKey: 'a b' }), status: 400, message: /idempotencyKey/ },
  { name: 'prototype pollution key', body: '{"topic":"a","data":1,"__proto__":{"polluted":true}}', status: 400, message: /./ },
  { name: 'wrong content type', body: 'topic=a', headers: { 'content-type': 'text/plain' }, status: 415, message: /Unsupported Media Type|content-type/i },
  { name: 'form content type', body: 'topic=a&data=1', headers: { 'content-type': 'application/x-www-form-urlencoded' }, status: 415, message: /./ },
  { name: 'body over the limit', body: json({ topic: 'a', data: 'x'.repeat(70_000) }), status: 413, message: /too large/i }
]

test('every bad publish gets its 4xx with a reason, publishes nothing, and other streams go on', async (t) => {
  const { url } = await build(t)
  const watcher = await openStream(`${url}/v1/stream?topic=a&topic=ok`)
  t.after(watcher.close)
  const before = await publish(url, { topic: 'a', data: 'before' })
  for (const bad of badRequests) {
    const response = await fetch(`${url}/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bad.headers },
      body: bad.body
    })
    assert.equal(response.status, bad.status, bad.name)
    const body = await response.json() as { statusCode: number, message: string }
    assert.equal(body.statusCode, bad.status, bad.name)
    assert.match(body.message, bad.message, `${bad.name}: ${body.message}`)
  }
  const after = await publish(url, { topic: 'a', data: 'after' })
  assert.equal(seq(after.body.id), seq(before.body.id) + 1, 'no id was spent on a rejected publish')
  const events = await watcher.waitForEvents(2)
  // Time for an event from a rejected publish, which should not come, to arrive.
  await new Promise((resolve) => setTimeout(resolve, 50))
  assert.deepEqual(payloads(watcher.events), ['before', 'after'])
  assert.equal(events.length, 2)
  assert.equal(({}.constructor.prototype as Record<string, unknown>).polluted, undefined)
})

test('unknown routes answer a JSON 404', async (t) => {
  const { url } = await build(t)
  const response = await fetch(`${url}/v1/nothing`)
  assert.equal(response.status, 404)
  assert.match((await response.json() as { message: string }).message, /no route for GET \/v1\/nothing/)
})
