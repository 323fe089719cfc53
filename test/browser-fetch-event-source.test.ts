import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { test } from 'node:test'
import { build, publish, until } from './helper.js'
import { launchChromium } from './helpers/browser.js'
import { openStream } from './helpers/sse-client.js'

/** The package's ES modules, as a page imports them (its imports name './parse' without the extension). */
const moduleDir = join(dirname(createRequire(import.meta.url).resolve('@microsoft/fetch-event-source')), '..', 'esm')

/** What the page keeps in its global scope (page code: no DOM types here). */
interface Page { messages: Array<{ id: string, event: string, data: string }>, opened: boolean }

test('in Chromium, @microsoft/fetch-event-source reports no empty message for the opening or heartbeats, only the events', { timeout: 60_000 }, async (t) => {
  const { app, url } = await build(t, { HERALD_HEARTBEAT_MS: '50', HERALD_RETRY_MS: '1500' })
  const { browser, close } = await launchChromium()
  t.after(close)
  const page = await (await browser.newContext()).newPage()
  const pageErrors: string[] = []
  page.on('pageerror', (error) => pageErrors.push(error.message))
  await page.route(`${url}/fetch-event-source/*`, async (route) => {
    const name = new URL(route.request().url()).pathname.split('/').pop() ?? ''
    await route.fulfill({ contentType: 'text/javascript', body: readFileSync(join(moduleDir, name.endsWith('.js') ? name : `${name}.js`)) })
  })
  await page.goto(`${url}/health`)
  // Page code as text: tsx would wrap its named functions in a helper the page does not have.
  await page.evaluate(`(async () => {
    globalThis.messages = []
    globalThis.opened = false
    const { fetchEventSource } = await import('/fetch-event-source/index.js')
    fetchEventSource('/v1/stream?topic=fes', {
      openWhenHidden: true,
      onopen: async () => { globalThis.opened = true },
      onmessage: (message) => { globalThis.messages.push({ id: message.id, event: message.event, data: message.data }) }
    }).catch(() => {})
  })()`)
  await page.waitForFunction(() => (globalThis as unknown as Page).opened, undefined, { timeout: 10_000 })
  await until(() => app.hub.listenerCount('fes') === 1, 5_000, 'subscribed')
  // A second stream, opened after the page's, counts heartbeats: the page's stream had them all too.
  const witness = await openStream(`${url}/v1/stream?topic=fes`)
  t.after(witness.close)
  await until(() => witness.comments() >= 6, 5_000, 'heartbeats')
  const sent = await publish(url, { topic: 'fes', data: { x: 1 }, type: 'update' })
  await until(() => witness.events.length === 1 && witness.comments() >= 12, 5_000, 'the event, then more heartbeats')
  await page.waitForFunction(() => (globalThis as unknown as Page).messages.length > 0, undefined, { timeout: 5_000 })
  assert.deepEqual(await page.evaluate(() => (globalThis as unknown as Page).messages), [{ id: sent.body.id, event: 'update', data: '{"x":1}' }])
  assert.deepEqual(pageErrors, [])
})
