import assert from 'node:assert/strict'
import { test } from 'node:test'
import { build, publish, until } from './helper.js'
import { openStream } from './helpers/sse-client.js'

interface Stats { streams: number, topics: number, subscriptions: number, eventsSent: number, bytesSent: number }

async function stats (url: string): Promise<Stats> {
  const response = await fetch(`${url}/v1/stats`)
  assert.equal(response.status, 200)
  return await response.json() as Stats
}

test('GET /v1/stats counts open streams, topics and subscriptions, and the events and bytes handed to streams', async (t) => {
  const { url } = await build(t)
  assert.deepEqual(await stats(url), { streams: 0, topics: 0, subscriptions: 0, eventsSent: 0, bytesSent: 0 })

  const both = await openStream(`${url}/v1/stream?topic=chat&topic=news`)
  const chat = await openStream(`${url}/v1/stream?topic=chat`)
  t.after(() => { both.close(); chat.close() })
  assert.deepEqual(await stats(url), { streams: 2, topics: 2, subscriptions: 3, eventsSent: 0, bytesSent: 0 })
  // What each stream got before any event (the `retry:` and a comment, written by the route, not the hub).
  const opening = both.text().length + chat.text().length

  for (const topic of ['chat', 'news', 'chat']) assert.equal((await publish(url, { topic, data: { topic } })).status, 202)
  await both.waitForEvents(3)
  await chat.waitForEvents(2)
  const after = await stats(url)
  assert.equal(after.eventsSent, 5, 'three events to one stream, two to the other')
  assert.equal(after.bytesSent, both.text().length + chat.text().length - opening, 'every byte of the frames the clients got')

  // Closed streams leave the counts of what is open, not the totals of what was sent.
  both.close()
  chat.close()
  await until(async () => (await stats(url)).streams === 0, 5_000, 'the streams released')
  assert.deepEqual(await stats(url), { ...after, streams: 0, topics: 0, subscriptions: 0 })
})

test('GET /v1/stats answers JSON that is readable from any allowed origin, like /health', async (t) => {
  const { url } = await build(t, { HERALD_CORS_ORIGINS: '*' })
  const response = await fetch(`${url}/v1/stats`, { headers: { origin: 'https://elsewhere.example' } })
  assert.equal(response.status, 200)
  assert.match(String(response.headers.get('content-type')), /^application\/json/)
  assert.equal(response.headers.get('access-control-allow-origin'), '*')
  assert.equal(response.headers.get('content-security-policy'), null, 'page headers are for pages only')
})
