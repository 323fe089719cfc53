import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import { resolve } from 'node:path'
import { after, before, test, type TestContext } from 'node:test'
import type { Browser, Page } from 'playwright-core'
import { build, publish, until } from './helper.js'
import { launchChromium } from './helpers/browser.js'
import { buildClient } from './helpers/client-build.js'
import { SECRET, token } from './helpers/tokens.js'

buildClient()

/** Screenshots of each scene, for a person to look at (git-ignored). */
const ARTIFACTS = resolve('test-artifacts/console')
mkdirSync(ARTIFACTS, { recursive: true })

let browser: Browser
let closeBrowser: () => Promise<void>
before(async () => {
  ({ browser, close: closeBrowser } = await launchChromium())
})
after(async () => await closeBrowser())

interface ConsolePage {
  page: Page
  /** Script errors, CSP refusals and dialogs: a page that works has none. */
  problems: string[]
}

/** The console in a fresh browser context; `query` e.g. `?topic=chat` connects at once. */
async function openConsole (t: TestContext, url: string, query = ''): Promise<ConsolePage> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
  t.after(() => context.close())
  const page = await context.newPage()
  const problems: string[] = []
  page.on('pageerror', (error) => problems.push(`error: ${error.message}`))
  page.on('console', (message) => {
    // Chromium reports every failed request on the console (the API's 4xx on purpose, a stopped server, a refused
    // stream's JSON answer): those are the page working. Anything else, CSP refusals included, is a problem.
    const text = message.text()
    const expected = text.startsWith('Failed to load resource') || text.startsWith('EventSource\'s response has a MIME type')
    if (message.type() === 'error' && !expected) problems.push(`console: ${text}`)
  })
  page.on('dialog', (dialog) => {
    problems.push(`dialog: ${dialog.message()}`)
    dialog.dismiss().catch(() => {})
  })
  const response = await page.goto(`${url}/console${query}`)
  assert.equal(response?.status(), 200)
  assert.match(String(response?.headers()['content-security-policy']), /script-src 'self'/)
  return { page, problems }
}

async function screenshot (t: TestContext, page: Page, name: string): Promise<void> {
  const path = `${ARTIFACTS}/${name}.png`
  await page.screenshot({ path, fullPage: true })
  t.diagnostic(`screenshot: ${path}`)
}

async function state (page: Page): Promise<string> {
  return (await page.locator('#state').getAttribute('class')) ?? ''
}

async function waitForState (page: Page, name: string): Promise<void> {
  await page.locator(`#state.${name}`).waitFor({ timeout: 15_000 })
}

async function logLines (page: Page): Promise<string[]> {
  return await page.locator('#log li').allTextContents()
}

/** The cells of the row of event `id`: id, topic, type, time, size, payload summary. */
async function rowOf (page: Page, id: string): Promise<string[]> {
  const row = page.locator(`#event-rows tr[data-id="${id}"]`)
  await row.waitFor({ timeout: 10_000 })
  // The payload cell's text is its one-line summary; the pretty-printed rest shows only when opened.
  return await row.locator('td').evaluateAll((cells) => cells.map((cell) => (cell.querySelector('summary') ?? cell).textContent?.trim() ?? ''))
}

async function publishThroughForm (page: Page, fields: { topic?: string, type?: string, data: string }): Promise<void> {
  if (fields.topic !== undefined) await page.getByLabel('Topic', { exact: true }).fill(fields.topic)
  await page.getByLabel('Type (optional)').fill(fields.type ?? '')
  await page.getByLabel('Data (JSON)').fill(fields.data)
  await page.getByRole('button', { name: 'Publish' }).click()
}

/** The id the form says it published, once the API accepted it. */
async function publishedId (page: Page, after = ''): Promise<string> {
  await until(async () => {
    const id = await page.locator('#publish-result.ok .published-id').textContent({ timeout: 10_000 }).catch(() => null)
    return id !== null && id !== after
  }, 10_000, 'the form to say published')
  return (await page.locator('#publish-result .published-id').textContent()) ?? ''
}

test('the console subscribes to two topics, publishes through its form and shows each event with its topic', { timeout: 60_000 }, async (t) => {
  const { url } = await build(t)
  const { page, problems } = await openConsole(t, url)

  // Every field has a label, and the keyboard is enough: Enter in a field connects.
  const unlabelled = await page.locator('input, textarea').evaluateAll((fields) => fields.filter((field) => field.labels.length === 0).map((field) => field.id))
  assert.deepEqual(unlabelled, [])
  assert.equal(await page.getByRole('status').filter({ has: page.locator('#state') }).textContent(), 'Connection: not connected')
  await page.getByLabel('Topics').fill('chat news')
  await page.getByLabel('Topics').press('Enter')
  await waitForState(page, 'open')
  assert.equal(await page.locator('#state').textContent(), 'open')

  await publishThroughForm(page, { topic: 'news', data: '{ "headline": "<b>markup stays text</b>", "n": 1 }' })
  const fromForm = await publishedId(page)
  assert.match(fromForm, /^[0-9a-z]+-\d+$/)
  const [id, topic, type, time, size, payload] = await rowOf(page, fromForm)
  assert.equal(id, fromForm)
  assert.equal(topic, 'news')
  assert.equal(type, 'message')
  assert.match(time ?? '', /^\d\d:\d\d:\d\d\.\d{3}$/)
  assert.equal(size, `${Buffer.byteLength(JSON.stringify({ headline: '<b>markup stays text</b>', n: 1 }))} B`)
  assert.equal(payload, '{"headline":"<b>markup stays text</b>","n":1}')
  assert.equal(await page.locator('#event-rows b').count(), 0, 'payloads are text, never HTML')

  // A backend's publish to the other topic, with its own type; a topic the page did not ask for never shows.
  const fromApi = await publish(url, { topic: 'chat', data: { user: 'server' } })
  assert.equal(fromApi.status, 202)
  assert.deepEqual((await rowOf(page, fromApi.body.id)).slice(1, 3), ['chat', 'message'])
  assert.equal((await publish(url, { topic: 'elsewhere', data: 1 })).status, 202)
  // One event to both topics: one row. Published from the editor with Ctrl+Enter.
  await page.getByLabel('Topic', { exact: true }).fill('chat, news')
  await page.getByLabel('Data (JSON)').fill('[1, 2, 3]')
  await page.getByLabel('Data (JSON)').press('Control+Enter')
  const toBoth = await publishedId(page, fromForm)
  assert.equal((await rowOf(page, toBoth))[5], '[1,2,3]')
  assert.equal(await page.locator('#event-rows tr').count(), 3, 'three events, none from elsewhere, the shared one once')
  assert.deepEqual(await page.locator('#event-rows tr').evaluateAll((rows) => rows.map((row) => row.dataset.topic)), [
    (await rowOf(page, toBoth))[1], 'chat', 'news'
  ], 'newest first')

  // The payload opens from the keyboard, pretty-printed.
  const details = page.locator(`#event-rows tr[data-id="${fromForm}"] details`)
  await details.locator('summary').focus()
  await page.keyboard.press('Enter')
  assert.equal(await details.getAttribute('open'), '')
  assert.equal(await details.locator('pre').textContent(), JSON.stringify({ headline: '<b>markup stays text</b>', n: 1 }, null, 2))

  // The instance's figures: this page's one stream on two topics, and what it was sent.
  await until(async () => await page.locator('#stat-events').textContent() === '3', 10_000, 'the figures to count three events sent')
  assert.equal(await page.locator('#stat-streams').textContent(), '1')
  assert.equal(await page.locator('#stat-topics').textContent(), '2')
  assert.equal(await page.locator('#stat-subscriptions').textContent(), '2')
  assert.equal(await page.locator('#stat-status').textContent(), 'ok (memory)')
  await until(async () => /^\d+\.\d\/s$/.test(await page.locator('#stat-event-rate').textContent() ?? ''), 10_000, 'a rate')
  await screenshot(t, page, 'events')
  await page.emulateMedia({ colorScheme: 'dark' })
  await screenshot(t, page, 'events-dark')
  await page.setViewportSize({ width: 420, height: 900 })
  await screenshot(t, page, 'events-narrow')
  assert.deepEqual(problems, [])
})

test('the API\'s validation errors are shown next to the publish form, on the field they concern', { timeout: 60_000 }, async (t) => {
  const { url } = await build(t)
  const { page, problems } = await openConsole(t, url, '?topic=chat')
  await waitForState(page, 'open')
  const result = page.locator('#publish-result')

  // Invalid JSON goes to Herald as typed; its 400 is what the page shows.
  const broken = '{ "text": "unfinished'
  await publishThroughForm(page, { topic: 'chat', data: broken })
  await page.locator('#publish-result.error').waitFor({ timeout: 10_000 })
  const api = await publish(url, `{"topic":"chat","data":${broken}}`)
  assert.equal(api.status, 400)
  assert.equal(api.body.code, 'FST_ERR_CTP_INVALID_JSON_BODY')
  assert.equal(await result.locator('strong').textContent(), '400 Bad Request')
  assert.equal(await result.locator('.error-code').textContent(), api.body.code)
  assert.equal(await result.locator('.error-message').textContent(), api.body.message)
  assert.equal(await page.getByLabel('Data (JSON)').getAttribute('aria-invalid'), 'true')
  assert.equal(await page.getByLabel('Topic', { exact: true }).getAttribute('aria-invalid'), null)
  await screenshot(t, page, 'invalid-json')

  // A bad topic name: the schema's message, on the topic field.
  await publishThroughForm(page, { topic: 'no#hash', data: '{ "text": "fine" }' })
  await until(async () => await result.locator('.error-code').textContent() === 'FST_ERR_VALIDATION', 10_000, 'the validation error')
  const message = await result.locator('.error-message').textContent()
  assert.equal(message, (await publish(url, { topic: 'no#hash', data: { text: 'fine' } })).body.message)
  assert.match(message ?? '', /^body\/topic /)
  assert.equal(await page.getByLabel('Topic', { exact: true }).getAttribute('aria-invalid'), 'true')
  assert.equal(await page.getByLabel('Data (JSON)').getAttribute('aria-invalid'), null)
  await screenshot(t, page, 'bad-topic')

  // Fixed: accepted, the marks gone, the event in the table. Nothing was published by the refused attempts.
  await publishThroughForm(page, { topic: 'chat', data: '{ "text": "fine" }' })
  const id = await publishedId(page)
  await rowOf(page, id)
  assert.equal(await page.getByLabel('Topic', { exact: true }).getAttribute('aria-invalid'), null)
  assert.equal(await page.locator('#event-rows tr').count(), 1)
  assert.deepEqual(problems, [], 'no alert(), no script error')
})

test('a reset is shown as it happens: a stream asked to resume after a malformed id', { timeout: 60_000 }, async (t) => {
  const { url } = await build(t)
  const { page, problems } = await openConsole(t, url)
  assert.equal((await publish(url, { topic: 'news', data: 'before' })).status, 202)
  await page.getByLabel('Topics').fill('chat news')
  await page.getByLabel('Resume after event id').fill('not-an-id')
  await page.getByRole('button', { name: 'Connect', exact: true }).click()
  await waitForState(page, 'open')
  const reset = page.locator('#log li.reset')
  await reset.waitFor({ timeout: 10_000 })
  assert.match(await reset.textContent() ?? '', /reset \(malformed-id\) on chat, news after "not-an-id"/)
  assert.match(await page.locator('#event-rows tr.reset').textContent() ?? '', /malformed-id/)
  // Then live, from the head: the event before the reset is not replayed, the next one arrives.
  const next = await publish(url, { topic: 'chat', data: 'after' })
  await rowOf(page, next.body.id)
  assert.equal(await page.locator('#event-rows tr').count(), 2, 'the reset row and the new event')
  await screenshot(t, page, 'reset')
  assert.deepEqual(problems, [])
})

test('the state follows the stream as Herald stops and comes back on the same port, with the reset it brings', { timeout: 90_000 }, async (t) => {
  const first = await build(t)
  const port = new URL(first.url).port
  const { page, problems } = await openConsole(t, first.url, '?topic=chat')
  await waitForState(page, 'open')
  const before = await publish(first.url, { topic: 'chat', data: { n: 1 } })
  await rowOf(page, before.body.id)

  await first.app.close()
  await waitForState(page, 'reconnecting')
  await until(async () => await page.locator('#stat-status').textContent() === 'unreachable', 10_000, 'the figures to say unreachable')
  assert.match(await page.locator('#state').textContent() ?? '', /^reconnecting \(attempt \d+/)
  assert.equal(await page.locator('#stat-streams').textContent(), '…', 'no figures from a process that is gone')
  await screenshot(t, page, 'reconnecting')

  // A new process on the same address: a new memory broker, so a new epoch, which the stream resumes into.
  const second = await build(t, { PORT: port })
  await waitForState(page, 'open')
  const lines = await logLines(page)
  const states = lines.map((line) => line.replace(/^\S+ /, '')).filter((line) => /^(connecting|open|reconnecting)/.test(line))
  assert.equal(states[0], 'connecting')
  assert.equal(states[1], 'open')
  assert.match(states[2] ?? '', /^reconnecting/)
  assert.equal(states.at(-1), 'open')
  await page.locator('#log li.reset').waitFor({ timeout: 10_000 })
  assert.match(await page.locator('#log li.reset').textContent() ?? '', new RegExp(`reset \\(epoch-changed\\) on chat after "${before.body.id}"`))

  const afterRestart = await publish(second.url, { topic: 'chat', data: { n: 2 } })
  await rowOf(page, afterRestart.body.id)
  // The figures are the new process's: one stream, one event sent (the reset notice is not an event).
  await until(async () => await page.locator('#stat-events').textContent() === '1', 10_000, 'the figures of the new process')
  assert.equal(await page.locator('#stat-status').textContent(), 'ok (memory)')
  assert.equal(await page.locator('#stat-streams').textContent(), '1')
  assert.ok((await state(page)).includes('open'))
  await screenshot(t, page, 'reconnected')
  assert.deepEqual(problems, [])
})

test('the token field: a private topic refused without one (Herald\'s reason shown), then subscribed and published with one', { timeout: 60_000 }, async (t) => {
  const { url } = await build(t, { HERALD_JWT_SECRET: SECRET, HERALD_PRIVATE_TOPICS: 'private/**' })
  const { page, problems } = await openConsole(t, url)
  let streamRequests = 0
  page.on('request', (request) => { if (new URL(request.url()).pathname === '/v1/stream') streamRequests++ })
  await page.getByLabel('Topics').fill('private/inbox chat')
  await page.getByRole('button', { name: 'Connect', exact: true }).click()
  // The client reports Herald's answer (status, code, message) and, without a token to renew, stops at once.
  const refused = page.locator('#log li.error')
  await refused.waitFor({ timeout: 10_000 })
  assert.match(await refused.textContent() ?? '', /Herald refused the stream: 401 HERALD_TOKEN_MISSING .*private\/inbox/)
  assert.match(await page.locator('#state').textContent() ?? '', /^unauthorized \(attempt 1, 401 HERALD_TOKEN_MISSING, stopped/)
  assert.ok((await state(page)).includes('stopped'))
  // Not retried: no more attempts however long the page waits.
  await new Promise((resolve) => setTimeout(resolve, 3_000))
  assert.equal(streamRequests, 1, 'one stream request, not retried')
  assert.equal(await refused.count(), 1, 'said once')
  await publishThroughForm(page, { topic: 'private/inbox', data: '"hi"' })
  await until(async () => await page.locator('#publish-result .error-code').textContent() === 'HERALD_TOKEN_MISSING', 10_000, 'the 401')
  await screenshot(t, page, 'token-missing')

  await page.getByLabel('Token').fill(token({ subscribe: ['private/**'], publish: ['private/**', 'chat'] }))
  await page.getByRole('button', { name: 'Connect', exact: true }).click()
  await waitForState(page, 'open')
  await publishThroughForm(page, { topic: 'private/inbox', data: '{ "secret": true }' })
  const id = await publishedId(page)
  assert.deepEqual((await rowOf(page, id)).slice(1, 3), ['private/inbox', 'message'])

  // A topic the token may not publish to: Herald's 403, on the topic field.
  await publishThroughForm(page, { topic: 'news', data: '1' })
  await until(async () => await page.locator('#publish-result .error-code').textContent() === 'HERALD_FORBIDDEN', 10_000, 'the 403')
  assert.match(await page.locator('#publish-result .error-message').textContent() ?? '', /news/)
  assert.equal(await page.getByLabel('Topic', { exact: true }).getAttribute('aria-invalid'), 'true')
  await until(async () => await page.locator('#stat-events').textContent() === '1', 10_000, 'the figures to count the event')
  await screenshot(t, page, 'token-forbidden')
  assert.deepEqual(problems, [])
})

test('a stream Herald answers 400 (a bad topic name) is said with Herald\'s reason, and not retried', { timeout: 60_000 }, async (t) => {
  const { url } = await build(t)
  const { page, problems } = await openConsole(t, url)
  let streamRequests = 0
  page.on('request', (request) => { if (new URL(request.url()).pathname === '/v1/stream') streamRequests++ })
  await page.getByLabel('Topics').fill('bad$topic')
  await page.getByRole('button', { name: 'Connect', exact: true }).click()
  await page.locator('#state.rejected.stopped').waitFor({ timeout: 10_000 })
  assert.match(await page.locator('#state').textContent() ?? '', /^rejected \(attempt 1, 400 \S+, stopped/)
  assert.match(await page.locator('#log li.error').first().textContent() ?? '', /Herald refused the stream: 400 .*topic/)
  await new Promise((resolve) => setTimeout(resolve, 3_000))
  assert.equal(streamRequests, 1, 'one stream request, not retried')
  assert.deepEqual(problems, [])
})
