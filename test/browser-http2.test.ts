import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import type { Http2Session, ServerHttp2Stream } from 'node:http2'
import { test } from 'node:test'
import { buildFor, publish, until } from './helper.js'
import { launchChromium } from './helpers/browser.js'

/** What each tab keeps in its global scope (page code: no DOM types here). */
interface Tab { received: unknown[], opened: boolean }

test('in Chromium over HTTP/2, 10 tabs on one origin share one connection and each receives an event published after it connected', { timeout: 90_000 }, async (t) => {
  const herald = await buildFor(t, 'h2')
  // What the server saw: the protocol of each stream request, and the connections that carried them.
  const streamRequests: string[] = []
  herald.app.server.on('request', (request: IncomingMessage) => {
    if (request.url?.startsWith('/v1/stream') === true) streamRequests.push(request.httpVersion)
  })
  const connections = new Set<Http2Session>()
  herald.app.server.on('stream', (stream: ServerHttp2Stream, headers: Record<string, string>) => {
    if (headers[':path']?.startsWith('/v1/stream') === true && stream.session !== undefined) connections.add(stream.session)
  })

  const { browser, close } = await launchChromium()
  t.after(close)
  // The test CA is not the browser's: accept the certificate (the connection is still TLS, with ALPN).
  const context = await browser.newContext({ ignoreHTTPSErrors: true })
  const tabs = await Promise.all(Array.from({ length: 10 }, async () => await context.newPage()))
  const pageErrors: string[] = []
  for (const tab of tabs) tab.on('pageerror', (error) => pageErrors.push(error.message))
  await Promise.all(tabs.map(async (tab) => await tab.goto(`${herald.url}/health`)))
  for (const tab of tabs) {
    await tab.evaluate(() => {
      const state = globalThis as unknown as Tab
      state.received = []
      state.opened = false
      const source = new EventSource('/v1/stream?topic=tabs&envelope=1')
      source.onopen = () => { state.opened = true }
      source.onmessage = (event) => state.received.push(JSON.parse(event.data))
    })
  }
  await Promise.all(tabs.map(async (tab) => await tab.waitForFunction(() => (globalThis as unknown as Tab).opened, undefined, { timeout: 10_000 })))
  await until(() => herald.app.hub.listenerCount('tabs') === 10, 5_000, 'ten subscriptions')

  const reply = await publish(herald.url, { topic: 'tabs', data: { hello: 'every tab' } })
  assert.equal(reply.status, 202)
  await Promise.all(tabs.map(async (tab) => await tab.waitForFunction(() => (globalThis as unknown as Tab).received.length > 0, undefined, { timeout: 10_000 })))
  for (const tab of tabs) assert.deepEqual(await tab.evaluate(() => (globalThis as unknown as Tab).received), [{ topic: 'tabs', data: { hello: 'every tab' } }])

  const protocols = await Promise.all(tabs.map(async (tab) => await tab.evaluate('performance.getEntriesByType("navigation")[0].nextHopProtocol')))
  assert.deepEqual(protocols, Array(10).fill('h2'))
  assert.deepEqual(streamRequests, Array(10).fill('2.0'))
  assert.equal(connections.size, 1, 'one connection carries every tab\'s stream')
  assert.deepEqual(pageErrors, [])
})
