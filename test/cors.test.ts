import assert from 'node:assert/strict'
import { request } from 'node:http'
import { test } from 'node:test'
import { build } from './helper.js'
import { SECRET, token } from './helpers/tokens.js'

/** A raw request that returns status and headers as soon as they arrive (streams stay open otherwise). */
async function head (url: string, method: string, headers: Record<string, string>): Promise<{ status: number, headers: Record<string, string | string[] | undefined> }> {
  return await new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, (response) => {
      resolve({ status: response.statusCode ?? 0, headers: response.headers })
      req.destroy()
    })
    req.on('error', reject)
    req.end()
  })
}

const allowed = 'http://app.example'
const refused = 'http://evil.example'

test('listed origins: preflight for publishing, credentials, and CORS headers on the SSE response itself', async (t) => {
  const { url } = await build(t, { HERALD_CORS_ORIGINS: `${allowed},http://other.example` })
  const preflight = await head(`${url}/v1/events`, 'OPTIONS', {
    origin: allowed, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,authorization'
  })
  assert.equal(preflight.status, 204)
  assert.equal(preflight.headers['access-control-allow-origin'], allowed)
  assert.equal(preflight.headers['access-control-allow-credentials'], 'true')
  assert.match(String(preflight.headers['access-control-allow-methods']), /POST/)
  assert.match(String(preflight.headers['access-control-allow-headers']), /authorization/)

  const stream = await head(`${url}/v1/stream?topic=chat`, 'GET', { origin: allowed, accept: 'text/event-stream' })
  assert.equal(stream.status, 200)
  assert.match(String(stream.headers['content-type']), /text\/event-stream/)
  assert.equal(stream.headers['access-control-allow-origin'], allowed, 'CORS survives the hijacked stream reply')
  assert.equal(stream.headers['access-control-allow-credentials'], 'true')

  const evilPreflight = await head(`${url}/v1/events`, 'OPTIONS', { origin: refused, 'access-control-request-method': 'POST' })
  assert.equal(evilPreflight.headers['access-control-allow-origin'], undefined)
  const evilStream = await head(`${url}/v1/stream?topic=chat`, 'GET', { origin: refused })
  assert.equal(evilStream.headers['access-control-allow-origin'], undefined)
})

test('* opens the streams to any origin without credentials, and never the publish API', async (t) => {
  const { url } = await build(t, { HERALD_CORS_ORIGINS: '*' })
  const stream = await head(`${url}/v1/stream?topic=chat`, 'GET', { origin: refused })
  assert.equal(stream.headers['access-control-allow-origin'], '*')
  assert.equal(stream.headers['access-control-allow-credentials'], undefined)
  const preflight = await head(`${url}/v1/events`, 'OPTIONS', { origin: refused, 'access-control-request-method': 'POST' })
  assert.equal(preflight.headers['access-control-allow-origin'], undefined)
})

test('* never opens a stream that asks for a private topic, even one carrying a valid token', async (t) => {
  const { url } = await build(t, { HERALD_CORS_ORIGINS: '*', HERALD_JWT_SECRET: SECRET, HERALD_PRIVATE_TOPICS: 'private/**' })
  const subscriber = token({ subscribe: ['private/**'] })
  const publicStream = await head(`${url}/v1/stream?topic=news`, 'GET', { origin: refused })
  assert.equal(publicStream.headers['access-control-allow-origin'], '*')
  for (const topics of ['topic=private/a', 'topic=news&topic=private/a']) {
    const stream = await head(`${url}/v1/stream?${topics}&access_token=${subscriber}`, 'GET', { origin: refused })
    assert.equal(stream.status, 200, 'the stream itself is allowed: the token covers it')
    assert.equal(stream.headers['access-control-allow-origin'], undefined, topics)
  }
})

test('CORS headers also reach refusals, so a page can read why (401, 403, 429)', async (t) => {
  const { url } = await build(t, { HERALD_CORS_ORIGINS: allowed, HERALD_JWT_SECRET: SECRET, HERALD_PRIVATE_TOPICS: 'private/**', HERALD_RATE_LIMIT_PER_MINUTE: '1' })
  const unauthorized = await head(`${url}/v1/stream?topic=private/a`, 'GET', { origin: allowed })
  assert.equal(unauthorized.status, 401)
  assert.equal(unauthorized.headers['access-control-allow-origin'], allowed)
  const forbidden = await head(`${url}/v1/stream?topic=private/a&access_token=${token({ subscribe: ['private/b'] })}`, 'GET', { origin: allowed })
  assert.equal(forbidden.status, 403)
  assert.equal(forbidden.headers['access-control-allow-origin'], allowed)
  const send = async () => await fetch(`${url}/v1/events`, { method: 'POST', headers: { origin: allowed, 'content-type': 'application/json' }, body: '{"topic":"a","data":1}' })
  assert.equal((await send()).status, 401)
  const limited = await send()
  assert.equal(limited.status, 429)
  assert.equal(limited.headers.get('access-control-allow-origin'), allowed)
  assert.equal(limited.headers.get('access-control-expose-headers'), 'retry-after', 'the page may read Retry-After')
})

test('no CORS headers unless origins are configured', async (t) => {
  const { url } = await build(t)
  const stream = await head(`${url}/v1/stream?topic=chat`, 'GET', { origin: allowed })
  assert.equal(stream.headers['access-control-allow-origin'], undefined)
})

test('security headers: nosniff everywhere, a strict CSP on the pages', async (t) => {
  const { url } = await build(t)
  const page = await fetch(url)
  assert.equal(page.headers.get('x-content-type-options'), 'nosniff')
  const csp = page.headers.get('content-security-policy') ?? ''
  assert.match(csp, /default-src 'self'/)
  assert.match(csp, /script-src 'self'/)
  assert.doesNotMatch(csp, /unsafe-inline/)
  const stream = await head(`${url}/v1/stream?topic=chat`, 'GET', {})
  assert.equal(stream.headers['x-content-type-options'], 'nosniff')
  const published = await fetch(`${url}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"topic":"a","data":1}' })
  assert.equal(published.headers.get('x-content-type-options'), 'nosniff')
})
