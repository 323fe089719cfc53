import assert from 'node:assert/strict'
import { request } from 'node:http'
import { test } from 'node:test'
import { build } from './helper.js'

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
