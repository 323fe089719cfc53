import assert from 'node:assert/strict'
import { test } from 'node:test'
import { build, publish } from './helper.js'
import { launchChromium } from './helpers/browser.js'

test('the chat demo works in two browser windows at once', { timeout: 60_000 }, async (t) => {
  const { url } = await build(t)
  const { browser, close } = await launchChromium()
  t.after(close)
  const context = await browser.newContext()
  const alice = await context.newPage()
  const bob = await context.newPage()
  const pageErrors: string[] = []
  for (const page of [alice, bob]) page.on('pageerror', (error) => pageErrors.push(error.message))
  await Promise.all([alice.goto(url), bob.goto(url)])
  await Promise.all([alice, bob].map(async (page) => await page.locator('#status.open').waitFor({ timeout: 10_000 })))

  await alice.fill('#user', 'alice')
  await alice.fill('#text', 'hello <b>bob</b>')
  await alice.click('button[type=submit]')
  await bob.fill('#user', 'bob')
  await bob.fill('#text', 'hi alice')
  await bob.press('#text', 'Enter')

  for (const page of [alice, bob]) {
    await page.locator('#messages li').nth(1).waitFor({ timeout: 10_000 })
    const lines = await page.locator('#messages li').allTextContents()
    assert.equal(lines.length, 2)
    assert.match(lines[0] ?? '', /alice: hello <b>bob<\/b>$/, 'shown as text, not HTML')
    assert.match(lines[1] ?? '', /bob: hi alice$/)
  }
  assert.equal(await alice.locator('#messages b').count(), 0)

  // A message published by a backend (curl, any language) reaches the page too.
  await publish(url, { topic: 'chat', type: 'message', data: { user: 'server', text: 'from the API', at: Date.now() } })
  await bob.locator('#messages li').nth(2).waitFor({ timeout: 10_000 })
  await bob.screenshot({ path: process.env.HERALD_SCREENSHOT ?? '/tmp/herald-demo.png' })
  assert.deepEqual(pageErrors, [])
})
