// The security-headers plugin alone on a bare Fastify (and with the static plugin), through inject: no network.
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import Fastify, { type FastifyServerOptions } from 'fastify'
import securityHeaders from '../plugins/security-headers.js'
import staticPages from '../plugins/static.js'

const PAGE_ONLY = ['content-security-policy', 'x-frame-options', 'strict-transport-security', 'cross-origin-opener-policy', 'origin-agent-cluster', 'referrer-policy', 'x-dns-prefetch-control']

async function bare (t: TestContext, options: FastifyServerOptions = {}) {
  const app = Fastify(options)
  t.after(() => app.close())
  await app.register(securityHeaders)
  app.get('/page', (_request, reply) => reply.pageHeaders().type('text/html').send('<!doctype html><title>page</title>'))
  app.get('/json', () => ({ ok: true }))
  app.get('/fails', async () => { throw Object.assign(new Error('nope'), { statusCode: 400 }) })
  app.get('/stream', (_request, reply) => {
    // What routes/stream.ts does: hijack, then copy the headers hooks set onto the raw response.
    reply.hijack()
    for (const [name, value] of Object.entries(reply.getHeaders())) if (value !== undefined) reply.raw.setHeader(name, value)
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream' })
    reply.raw.end(':\n\n')
  })
  return app
}

test('an HTML page gets the CSP, frame options and the other document policies', async (t) => {
  const app = await bare(t)
  const page = await app.inject('/page')
  assert.equal(page.statusCode, 200)
  assert.equal(page.headers['x-content-type-options'], 'nosniff')
  const csp = String(page.headers['content-security-policy'])
  assert.match(csp, /default-src 'self'/)
  assert.match(csp, /script-src 'self'/)
  assert.match(csp, /frame-ancestors 'none'/)
  assert.doesNotMatch(csp, /unsafe-inline/)
  assert.equal(page.headers['x-frame-options'], 'DENY')
  assert.equal(page.headers['cross-origin-opener-policy'], 'same-origin')
  assert.equal(page.headers['referrer-policy'], 'no-referrer')
})

test('JSON replies, errors and streams get nosniff and none of the page headers', async (t) => {
  const app = await bare(t)
  for (const url of ['/json', '/fails', '/missing', '/stream']) {
    const response = await app.inject(url)
    assert.equal(response.headers['x-content-type-options'], 'nosniff', url)
    for (const name of PAGE_ONLY) assert.equal(response.headers[name], undefined, `${url} ${name}`)
  }
  const json = await app.inject('/json')
  assert.deepEqual(Object.keys(json.headers).sort(), ['connection', 'content-length', 'content-type', 'date', 'x-content-type-options'])
})

test('HSTS only on a page served over TLS', async (t) => {
  // Herald has no TLS listener: a trusted proxy's X-Forwarded-Proto is how request.protocol becomes https here.
  const app = await bare(t, { trustProxy: true })
  const overTls = await app.inject({ url: '/page', headers: { 'x-forwarded-proto': 'https' } })
  assert.equal(overTls.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains')
  const plain = await app.inject('/page')
  assert.equal(plain.headers['strict-transport-security'], undefined)
  const json = await app.inject({ url: '/json', headers: { 'x-forwarded-proto': 'https' } })
  assert.equal(json.headers['strict-transport-security'], undefined)
})

test('the demo pages in public/ get the page headers; their scripts and styles only nosniff', async (t) => {
  const app = Fastify()
  t.after(() => app.close())
  await app.register(securityHeaders)
  await app.register(staticPages)
  for (const url of ['/', '/index.html']) {
    const page = await app.inject(url)
    assert.equal(page.statusCode, 200, url)
    assert.match(String(page.headers['content-type']), /^text\/html/, url)
    assert.match(String(page.headers['content-security-policy']), /frame-ancestors 'none'/, url)
    assert.equal(page.headers['x-frame-options'], 'DENY', url)
  }
  for (const url of ['/app.js', '/style.css']) {
    const asset = await app.inject(url)
    assert.equal(asset.statusCode, 200, url)
    assert.equal(asset.headers['x-content-type-options'], 'nosniff', url)
    assert.equal(asset.headers['content-security-policy'], undefined, url)
  }
})
