import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { test } from 'node:test'
import type { Page } from 'playwright-core'
import { build, publish } from './helper.js'
import { launchChromium } from './helpers/browser.js'
import { SECRET, token } from './helpers/tokens.js'

/** Opens an EventSource in the page and reports the first thing that happens: a message, or an error. */
async function firstOutcome (page: Page, url: string, withCredentials: boolean): Promise<string> {
  return await page.evaluate(async ([streamUrl, credentials]) => await new Promise<string>((resolve) => {
    const source = new EventSource(streamUrl as string, { withCredentials: credentials as boolean })
    source.onmessage = (event) => { source.close(); resolve(`message:${event.data}`) }
    source.onerror = () => { source.close(); resolve('error') }
  }), [url, withCredentials] as const)
}

/** Publishes until the page reports an outcome: its EventSource connects at a moment the test cannot see. */
async function publishUntilSettled (outcome: Promise<string>, send: () => Promise<unknown>, attempts: number): Promise<string> {
  const state = { settled: false }
  outcome.then(() => { state.settled = true }, () => { state.settled = true })
  for (let attempt = 0; attempt < attempts && !state.settled; attempt++) {
    await send()
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return await outcome
}

test('in Chromium, a page on another origin subscribes with withCredentials and its cookie opens a private stream', { timeout: 60_000 }, async (t) => {
  // A page server on its own port. http://127.0.0.1:<port> is another origin than Herald's but the same
  // site, as app.example.com is to push.example.com: the one way browsers still send cookies cross-origin
  // (third-party cookies are blocked). It is listed; http://localhost:<port> is not.
  const pageServer = createServer((_request, response) => {
    response.setHeader('content-type', 'text/html')
    response.end('<!doctype html><title>another origin</title>')
  })
  await new Promise<void>((resolve) => pageServer.listen(0, '127.0.0.1', resolve))
  t.after(() => pageServer.close())
  const pagePort = (pageServer.address() as { port: number }).port
  const allowedOrigin = `http://127.0.0.1:${pagePort}`

  const herald = await build(t, { HERALD_JWT_SECRET: SECRET, HERALD_PRIVATE_TOPICS: 'private/**', HERALD_CORS_ORIGINS: allowedOrigin })
  const publisher = { authorization: `Bearer ${token({ publish: ['**'] })}` }
  const { browser, close } = await launchChromium()
  t.after(close)
  const context = await browser.newContext()
  await context.addCookies([{ name: 'herald_token', value: token({ subscribe: ['private/**'] }), domain: '127.0.0.1', path: '/', sameSite: 'Lax' }])

  const allowed = await context.newPage()
  await allowed.goto(allowedOrigin)
  const privateUrl = `${herald.url}/v1/stream?topic=private/news`
  const received = firstOutcome(allowed, privateUrl, true)
  const sendPrivate = async () => await publish(herald.url, { topic: 'private/news', data: { hello: 'cross-origin' } }, publisher)
  assert.equal(await publishUntilSettled(received, sendPrivate, 100), 'message:{"hello":"cross-origin"}')

  // Without credentials the cookie stays home: the private stream is refused.
  assert.equal(await firstOutcome(allowed, privateUrl, false), 'error')

  // An origin that is not listed cannot read even a public stream.
  const refused = await context.newPage()
  await refused.goto(`http://localhost:${pagePort}`)
  const publicUrl = `${herald.url}/v1/stream?topic=public`
  const blocked = firstOutcome(refused, publicUrl, false)
  const sendPublic = async () => await publish(herald.url, { topic: 'public', data: 'visible?' }, publisher)
  assert.equal(await publishUntilSettled(blocked, sendPublic, 10), 'error')
})
