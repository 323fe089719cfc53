import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { test } from 'node:test'
import { build, publish, until } from './helper.js'
import { launchChromium } from './helpers/browser.js'
import { freePort, RedisServer } from './helpers/redis-server.js'
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

/** The module docs/browser-client.md shows for fetch-event-source, as written there, importing the package as a page does. */
function documentedSnippet (): string {
  const doc = readFileSync('docs/browser-client.md', 'utf8')
  const section = doc.slice(doc.indexOf('## Reconnecting with @microsoft/fetch-event-source'))
  const block = /```js\n([\s\S]*?)```/.exec(section)
  assert.ok(block !== null, 'docs/browser-client.md: the fetch-event-source snippet')
  const code = block[1] as string
  assert.ok(code.includes("from '@microsoft/fetch-event-source'"), 'the snippet imports the package')
  return code.replace("from '@microsoft/fetch-event-source'", "from '/fetch-event-source/index.js'")
}

interface Pages { documented: string[], defaults: string[], refusals: string[] }

async function publishAll (url: string, count: number): Promise<string[]> {
  const ids: string[] = []
  for (let index = 0; index < count; index++) {
    const reply = await publish(url, { topic: 'fes', data: { n: index } })
    assert.equal(reply.status, 202)
    ids.push(reply.body.id)
  }
  return ids
}

test('in Chromium, the documented fetch-event-source settings get every event across server-ended streams (a drain), refusals and a restart; the default options stop at the first end', { timeout: 120_000 }, async (t) => {
  const redis = await RedisServer.start()
  t.after(async () => await redis.stop())
  const port = await freePort()
  const env = { REDIS_URL: redis.url, HERALD_RETRY_MS: '500' }
  let instance = await build(undefined, { ...env, PORT: String(port) })
  t.after(async () => await instance.app.close())
  // Publishes go through a second instance on the same Redis, so they go on while the first is down.
  const publisher = await build(t, env)
  const { browser, close } = await launchChromium()
  t.after(close)
  const page = await (await browser.newContext()).newPage()
  const pageErrors: string[] = []
  page.on('pageerror', (error) => pageErrors.push(error.message))
  await page.route(`${instance.url}/fetch-event-source/*`, async (route) => {
    const name = new URL(route.request().url()).pathname.split('/').pop() ?? ''
    await route.fulfill({ contentType: 'text/javascript', body: readFileSync(join(moduleDir, name.endsWith('.js') ? name : `${name}.js`)) })
  })
  await page.route(`${instance.url}/documented-snippet.js`, async (route) => await route.fulfill({ contentType: 'text/javascript', body: documentedSnippet() }))
  await page.goto(`${instance.url}/health`)
  await page.evaluate(`(async () => {
    globalThis.documented = []
    globalThis.defaults = []
    globalThis.refusals = []
    const { subscribe } = await import('/documented-snippet.js')
    const { fetchEventSource } = await import('/fetch-event-source/index.js')
    subscribe('/v1/stream?topic=fes', {
      onEvent: (message) => globalThis.documented.push(message.id),
      onRefused: (refusal) => globalThis.refusals.push(refusal.reason)
    }).catch((error) => { globalThis.stopped = String(error) })
    fetchEventSource('/v1/stream?topic=fes', {
      openWhenHidden: true,
      onmessage: (message) => { if (message.id !== '') globalThis.defaults.push(message.id) }
    }).catch(() => {})
  })()`)
  const pages = async (): Promise<Pages> => await page.evaluate(() => {
    const scope = globalThis as unknown as Pages
    return { documented: scope.documented, defaults: scope.defaults, refusals: scope.refusals }
  })
  await until(() => instance.app.hub.listenerCount('fes') === 2, 10_000, 'both streams open')

  const ids = await publishAll(publisher.url, 40)
  await until(async () => (await pages()).documented.length === 40, 10_000, 'the first 40')
  // A drain ends both streams (retry: ~300 ms) and refuses new ones in band (herald.unavailable, draining).
  await instance.app.hub.drain(0, 300)
  ids.push(...await publishAll(publisher.url, 40))
  await until(async () => (await pages()).refusals.length >= 1, 10_000, 'a refusal seen by the snippet')
  // Down, then up again on the same address.
  await instance.app.close()
  ids.push(...await publishAll(publisher.url, 20))
  instance = await build(undefined, { ...env, PORT: String(port) })
  ids.push(...await publishAll(publisher.url, 20))
  try {
    await until(async () => (await pages()).documented.length >= ids.length, 30_000, 'every event')
  } finally {
    const got = await pages()
    t.diagnostic(`documented settings: ${got.documented.length} of ${ids.length} events, refusals ${JSON.stringify(got.refusals)}; default options: ${got.defaults.length} of ${ids.length}`)
  }
  const got = await pages()
  assert.deepEqual(got.documented, ids, 'every event once, in order')
  assert.ok(got.refusals.every((reason) => reason === 'draining'))
  assert.ok(got.defaults.length < ids.length, 'the defaults do stop (else the documented settings would not be needed)')
  assert.equal(await page.evaluate(() => (globalThis as any).stopped), undefined)
  assert.deepEqual(pageErrors, [])
})
