import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import type { Page } from 'playwright-core'
import { mintToken } from '../src/cli/token.js'
import { build, publish, until } from './helper.js'
import { launchChromium } from './helpers/browser.js'
import { buildClient } from './helpers/client-build.js'
import { openStream } from './helpers/sse-client.js'

buildClient()

async function lines (page: Page, count: number): Promise<string[]> {
  await page.locator('#messages li').nth(count - 1).waitFor({ timeout: 10_000 })
  return await page.locator('#messages li').allTextContents()
}

test('the chat demo: history on load, two windows on one shared stream, any payload shown sensibly', { timeout: 60_000 }, async (t) => {
  const { app, url } = await build(t)
  // Published before any page is open: the README's own example, and a bare string.
  assert.equal((await publish(url, { topic: 'chat', type: 'message', data: { user: 'ada', text: 'hello' } })).status, 202)
  assert.equal((await publish(url, { topic: 'chat', data: 'hi there' })).status, 202)

  const { browser, close } = await launchChromium()
  t.after(close)
  const context = await browser.newContext()
  const alice = await context.newPage()
  const bob = await context.newPage()
  const pageErrors: string[] = []
  for (const page of [alice, bob]) page.on('pageerror', (error) => pageErrors.push(error.message))
  await alice.goto(url)
  await bob.goto(url)
  await Promise.all([alice, bob].map(async (page) => await page.locator('#status.open').waitFor({ timeout: 10_000 })))
  for (const page of [alice, bob]) assert.deepEqual(await lines(page, 2), ['ada: hello', 'hi there'], 'the history, shown as it was published')

  await alice.fill('#user', 'alice')
  await alice.fill('#text', 'hello <b>bob</b>')
  await alice.click('button[type=submit]')
  await bob.fill('#user', 'bob')
  await bob.fill('#text', 'hi alice')
  await bob.press('#text', 'Enter')
  for (const page of [alice, bob]) {
    const shown = await lines(page, 4)
    assert.equal(shown.length, 4)
    assert.match(shown[2] ?? '', /^\[[^\]]+\] alice: hello <b>bob<\/b>$/, 'shown as text, not HTML, with its time')
    assert.match(shown[3] ?? '', /^\[[^\]]+\] bob: hi alice$/)
  }
  assert.equal(await alice.locator('#messages b').count(), 0)
  assert.equal(app.hub.streamCount, 1, 'two windows, one stream')

  // Whatever a backend (curl, any language) publishes is shown as what it is.
  const payloads: Array<[unknown, string]> = [
    [42, '42'],
    [{ a: 1 }, '{"a":1}'],
    [null, 'null'],
    [['x', 2], '["x",2]'],
    [{ text: 'no author' }, 'no author'],
    [{ user: 'eve', text: 'bad time', at: 'soon' }, 'eve: bad time']
  ]
  for (const [data] of payloads) assert.equal((await publish(url, { topic: 'chat', data })).status, 202)
  const shown = await lines(bob, 4 + payloads.length)
  assert.deepEqual(shown.slice(4), payloads.map(([, text]) => text))
  for (const text of shown) assert.doesNotMatch(text, /undefined|Invalid Date/)
  await bob.screenshot({ path: process.env.HERALD_SCREENSHOT ?? '/tmp/herald-demo.png' })
  assert.deepEqual(pageErrors, [])
})

/** docs/security.md's development-token example: its secret, the token command's arguments, the publish body. */
function docsTokenExample (): { secret: string, args: string[], body: unknown } {
  const page = readFileSync('docs/security.md', 'utf8')
  const block = /```sh\nexport HERALD_JWT_SECRET='([^']+)'\nTOKEN=\$\(npm run -s token -- ([^)]+)\)\n[\s\S]*?-d '([^']+)'\n```/.exec(page)
  assert.ok(block !== null, 'docs/security.md: the example under "Tokens for development"')
  const args = [...(block[2] as string).matchAll(/'([^']*)'|(\S+)/g)].map((match) => match[1] ?? match[2] as string)
  return { secret: block[1] as string, args, body: JSON.parse(block[3] as string) }
}

test('docs/security.md\'s token example publishes to the demo\'s topic, from curl and from the demo\'s Token field', { timeout: 60_000 }, async (t) => {
  const { secret, args, body } = docsTokenExample()
  const { url } = await build(t, { HERALD_JWT_SECRET: secret })
  const token = mintToken({ HERALD_JWT_SECRET: secret }, args)
  const curl = await publish(url, body, { authorization: `Bearer ${token}` })
  assert.equal(curl.status, 202, JSON.stringify(curl.body))

  const { browser, close } = await launchChromium()
  t.after(close)
  const page = await (await browser.newContext()).newPage()
  await page.goto(url)
  await page.locator('#status.open').waitFor({ timeout: 10_000 })
  assert.deepEqual(await lines(page, 1), ['ada: hello'])
  // Without a token the publish is refused, and the page says why.
  await page.fill('#user', 'grace')
  await page.fill('#text', 'no token')
  await page.click('button[type=submit]')
  await until(async () => (await page.locator('#error').textContent()) !== '', 5_000, 'the error line')
  assert.match(await page.locator('#error').textContent() ?? '', /^401: /)
  // With that page's token in the Token field, it goes through.
  await page.locator('details summary').click()
  await page.fill('#token', token)
  await page.fill('#text', 'with the token')
  await page.click('button[type=submit]')
  const shown = await lines(page, 2)
  assert.match(shown[1] ?? '', /grace: with the token$/)
  assert.equal(await page.locator('#error').textContent(), '')
})

test('the demo at 320 px: the Send button is on screen, a long word wraps inside the messages box, the page does not scroll sideways', { timeout: 60_000 }, async (t) => {
  const { url } = await build(t)
  const longWord = 'x'.repeat(300)
  assert.equal((await publish(url, { topic: 'chat', data: { user: 'ada', text: longWord } })).status, 202)
  const { browser, close } = await launchChromium()
  t.after(close)
  for (const width of [320, 375, 414]) {
    const page = await (await browser.newContext({ viewport: { width, height: 640 } })).newPage()
    await page.goto(url)
    await page.locator('#status.open').waitFor({ timeout: 10_000 })
    await lines(page, 1)
    const send = await page.locator('button[type=submit]').boundingBox()
    assert.ok(send !== null && send.x >= 0 && send.x + send.width <= width, `${width} px: Send at ${JSON.stringify(send)}`)
    for (const field of ['#user', '#text']) {
      const box = await page.locator(field).boundingBox()
      assert.ok(box !== null && box.x >= 0 && box.x + box.width <= width, `${width} px: ${field} at ${JSON.stringify(box)}`)
    }
    const item = await page.locator('#messages li').first().evaluate((element) => ({ scrollWidth: element.scrollWidth, clientWidth: element.clientWidth, height: element.getBoundingClientRect().height }))
    assert.ok(item.scrollWidth <= item.clientWidth, `${width} px: the long word is not cut: ${JSON.stringify(item)}`)
    assert.ok(item.height > 40, `${width} px: the long word wraps onto several lines: ${JSON.stringify(item)}`)
    assert.ok(await page.evaluate('document.documentElement.scrollWidth <= document.documentElement.clientWidth'), `${width} px: no sideways scroll`)
    // It can still be used there: a message sent from the phone arrives.
    await page.fill('#user', 'phone')
    await page.fill('#text', `hello from ${width} px`)
    await page.click('button[type=submit]')
    await page.locator('#messages li', { hasText: `hello from ${width} px` }).waitFor({ timeout: 10_000 })
    await page.close()
  }
})

test('the demo\'s badge says what the client says: refused with its reason while Herald refuses, never "live" until the stream opens', { timeout: 60_000 }, async (t) => {
  const { url } = await build(t, { HERALD_MAX_CONNECTIONS: '1' })
  const occupant = await openStream(`${url}/v1/stream?topic=other`)
  t.after(occupant.close)
  const { browser, close } = await launchChromium()
  t.after(close)
  const page = await (await browser.newContext()).newPage()
  // Every badge the page shows, as it shows it.
  // Page code as text: the tests are type-checked without the DOM's types.
  await page.addInitScript(`
    globalThis.badges = []
    addEventListener('DOMContentLoaded', () => {
      const status = document.getElementById('status')
      new MutationObserver(() => globalThis.badges.push(status.className + '|' + status.textContent)).observe(status, { childList: true, characterData: true, subtree: true, attributes: true })
    })
  `)
  await page.goto(url)
  await page.locator('#status[data-state=refused]').waitFor({ timeout: 10_000 })
  assert.match(await page.locator('#status').textContent() ?? '', /^refused: instance-full \(next try in \d s\)$/)
  await until(async () => /attempt 2/.test(await page.locator('#status').textContent() ?? ''), 15_000, 'a second refusal')
  const refusedBadges: string[] = await page.evaluate(() => (globalThis as any).badges)
  assert.ok(refusedBadges.every((badge) => !badge.includes('open') && !badge.includes('live')), JSON.stringify(refusedBadges))
  occupant.close()
  await page.locator('#status.open').waitFor({ timeout: 15_000 })
  assert.equal(await page.locator('#status').textContent(), 'live')
})
