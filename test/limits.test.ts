import assert from 'node:assert/strict'
import { test } from 'node:test'
import { build, publish, until } from './helper.js'
import { openStream } from './helpers/sse-client.js'

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

test('concurrent streams per instance: N allowed, N+1 is 503 with Retry-After, and a slot frees on close', async (t) => {
  const { app, url } = await build(t, { HERALD_MAX_CONNECTIONS: '3' })
  const streams = await Promise.all([1, 2, 3].map(async () => await openStream(`${url}/v1/stream?topic=a`)))
  t.after(() => { for (const stream of streams) stream.close() })
  assert.deepEqual(streams.map((stream) => stream.status), [200, 200, 200])
  const refused = await openStream(`${url}/v1/stream?topic=a`)
  assert.equal(refused.status, 503)
  assert.equal(refused.headers['retry-after'], '5')
  assert.match(refused.text(), /at most 3 streams/)
  streams[0]?.close()
  await until(() => app.broker.subscriptionCount === 2, 2_000, 'a slot to free')
  const again = await openStream(`${url}/v1/stream?topic=a`)
  again.close()
  assert.equal(again.status, 200)
})

test('publish rate: N per minute allowed, N+1 is 429 with Retry-After; other publishers keep their own budget', async (t) => {
  const { url } = await build(t, { HERALD_RATE_LIMIT_PER_MINUTE: '5' })
  for (let index = 0; index < 5; index++) assert.equal((await publish(url, { topic: 'a', data: index })).status, 202)
  const limited = await fetch(`${url}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"topic":"a","data":6}' })
  assert.equal(limited.status, 429)
  assert.ok(Number(limited.headers.get('retry-after')) > 0)
  const body = await limited.json() as { code: string, message: string }
  assert.equal(body.code, 'HERALD_RATE_LIMITED')
  assert.match(body.message, /at most 5 publishes per minute/)
  // A bearer token is its own bucket (in open mode the token is not checked, but it still keys the limit).
  assert.equal((await publish(url, { topic: 'a', data: 7 }, { authorization: 'Bearer some.other.publisher' })).status, 202)
  const stream = await openStream(`${url}/v1/stream?topic=a`)
  stream.close()
  assert.equal(stream.status, 200, 'streams are not rate limited')
})
