import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Page } from 'playwright-core'
import { build, publish, until } from './helper.js'
import { BalancerProcess, missing } from './helpers/balancer-process.js'
import { launchChromium } from './helpers/browser.js'
import { buildClient } from './helpers/client-build.js'
import { HeraldProcess } from './helpers/herald-process.js'
import { freePort, RedisServer } from './helpers/redis-server.js'
import { openStream } from './helpers/sse-client.js'
import { SECRET, token } from './helpers/tokens.js'
import { publishLoop } from './helpers/publish-loop.js'
import { lastState, openTab, pageLog, servePage, startClient, waitForEvents } from './helpers/client-page.js'
import { positionOn } from './helpers/event-ids.js'

buildClient()

async function publishAll (url: string, topic: string, count: number, from = 0): Promise<string[]> {
  const ids: string[] = []
  for (let index = from; index < from + count; index++) {
    const reply = await publish(url, { topic, data: { n: index } })
    assert.equal(reply.status, 202)
    ids.push(reply.body.id)
  }
  return ids
}

async function idsOf (page: Page, topic?: string): Promise<string[]> {
  return (await pageLog(page)).events.filter((event) => topic === undefined || event.topic === topic).map((event) => positionOn(event.id, event.topic))
}

test('SharedWorker: 10 tabs share one stream on the union of their topics; each gets its own topics\' events; closing tabs keeps the others going', { timeout: 90_000 }, async (t) => {
  const { app, url } = await build(t)
  const { browser, close } = await launchChromium()
  t.after(close)
  const context = await browser.newContext()
  await servePage(context, url)
  const tabs: Page[] = []
  for (let index = 0; index < 10; index++) tabs.push(await openTab(context, url))
  // Half the tabs listen to chat, the other half to chat and news.
  const sharing = await Promise.all(tabs.map(async (tab, index) => await startClient(tab, index < 5 ? ['chat'] : ['chat', 'news'])))
  assert.deepEqual(new Set(sharing), new Set(['worker']))
  await until(async () => (await Promise.all(tabs.map(lastState))).every((state) => state === 'open'), 10_000, 'every tab open')
  await until(() => app.hub.streamCount === 1, 5_000, 'one stream')
  assert.equal(app.hub.listenerCount('news'), 1)

  const chat = await publishAll(url, 'chat', 10)
  const news = await publishAll(url, 'news', 5)
  for (const [index, tab] of tabs.entries()) {
    await waitForEvents(tab, index < 5 ? 10 : 15)
    assert.deepEqual(await idsOf(tab, 'chat'), chat, `tab ${index}: every chat event once, in order`)
    assert.deepEqual(await idsOf(tab, 'news'), index < 5 ? [] : news, `tab ${index}: news only where subscribed`)
    const { events } = await pageLog(tab)
    assert.deepEqual({ ...events[0], id: positionOn(events[0]?.id ?? '', 'chat') }, { topic: 'chat', data: { n: 0 }, type: 'message', id: chat[0] })
  }
  assert.equal(app.hub.streamCount, 1, 'still one stream')

  // Close the first tab (it started the worker) and every news tab: the others keep receiving, on one stream
  // that no longer carries news.
  for (const tab of [tabs[0], ...tabs.slice(5)]) await tab?.close()
  const remaining = tabs.slice(1, 5)
  // The stream is reopened on the smaller union, resuming from the last id.
  await until(() => app.hub.listenerCount('news') === 0 && app.hub.streamCount === 1, 5_000, 'one stream, without news')
  const more = await publishAll(url, 'chat', 5, 10)
  for (const tab of remaining) {
    await waitForEvents(tab, 15)
    assert.deepEqual(await idsOf(tab), [...chat, ...more], 'nothing lost or repeated across the reopen')
  }
})

/** Publishes until stopped (test/helpers/publish-loop.ts); every publish must be accepted. */
async function stopPublishing (loop: ReturnType<typeof publishLoop>): Promise<string[]> {
  await loop.stop()
  assert.deepEqual(loop.results.filter((result) => result.status !== 202), [], 'every publish accepted')
  return loop.accepted()
}

/** The stream requests Herald logged (LOG_LEVEL info), with their query. */
function streamRequests (log: Array<Record<string, any>>): URLSearchParams[] {
  return log.filter((line) => line.msg === 'incoming request' && String(line.req?.url).startsWith('/v1/stream'))
    .map((line) => new URL(String(line.req.url), 'http://x').searchParams)
}

test('Web Locks fallback (no SharedWorker): 10 tabs share one stream; closing the leader hands over to another tab without loss', { timeout: 90_000 }, async (t) => {
  const { app, url, log } = await build(t, { LOG_LEVEL: 'info' })
  const { browser, close } = await launchChromium()
  t.after(close)
  const context = await browser.newContext()
  await context.addInitScript(() => { delete (globalThis as any).SharedWorker })
  await servePage(context, url)
  const tabs: Page[] = []
  for (let index = 0; index < 10; index++) tabs.push(await openTab(context, url))
  // The first tab takes the leader's lock; the others queue for it.
  assert.equal(await startClient(tabs[0] as Page, ['chat']), 'leader')
  await until(async () => await lastState(tabs[0] as Page) === 'open', 10_000, 'the leader open')
  for (const tab of tabs.slice(1)) assert.equal(await startClient(tab, ['chat']), 'leader')
  await until(async () => (await Promise.all(tabs.map(lastState))).every((state) => state === 'open'), 10_000, 'every tab open')
  await until(() => app.hub.streamCount === 1, 5_000, 'one stream')

  const loop = publishLoop(url, 'chat')
  await until(() => loop.accepted().length >= 20, 10_000, 'publishing')
  const requestsBefore = streamRequests(log).length
  await tabs[0]?.close()
  // Another tab takes over: one new stream, resuming after the last event the tabs had.
  await until(() => streamRequests(log).length > requestsBefore && app.hub.streamCount === 1, 10_000, 'a new leader\'s stream')
  const resumed = streamRequests(log).slice(requestsBefore)
  assert.equal(resumed.length, 1, 'one new stream')
  assert.ok((resumed[0]?.get('lastEventId') ?? '') !== '', 'the new leader resumes from an id')
  await until(() => loop.accepted().length >= 40, 10_000, 'more publishing')
  const ids = await stopPublishing(loop)
  for (const [index, tab] of tabs.slice(1).entries()) {
    await waitForEvents(tab, ids.length)
    assert.deepEqual(await idsOf(tab), ids, `tab ${index + 1}: every event once, in order, across the hand-over`)
  }
  assert.equal(app.hub.streamCount, 1)
})

test('a 502 from nginx while the only upstream is down is survived: the page reconnects and resumes what was published meanwhile', { timeout: 90_000, skip: missing('nginx') }, async (t) => {
  const redis = await RedisServer.start()
  t.after(async () => await redis.stop())
  const env = { REDIS_URL: redis.url }
  // A is behind nginx (both of deploy/nginx.conf's upstream slots), B publishes beside it on the same Redis.
  const port = await freePort()
  let a = await HeraldProcess.start({ ...env, PORT: String(port) })
  const b = await HeraldProcess.start(env)
  t.after(async () => { await a.kill(); await b.kill() })
  const upstream = `127.0.0.1:${port}`
  const nginx = await BalancerProcess.start('nginx', [upstream, upstream])
  t.after(async () => await nginx.stop())

  const { browser, close } = await launchChromium()
  t.after(close)
  const context = await browser.newContext()
  await servePage(context, nginx.url)
  const page = await openTab(context, nginx.url)
  assert.equal(await startClient(page, ['failover']), 'worker')
  await until(async () => await lastState(page) === 'open', 10_000, 'the page open')
  const before = await publishAll(b.url, 'failover', 5)
  await waitForEvents(page, 5)

  await a.kill('SIGKILL')
  const down = await fetch(`${nginx.url}/v1/stream?topic=failover`)
  assert.equal(down.status, 502, 'nginx answers 502 while its upstream is down')
  await down.body?.cancel()
  // The EventSource closed for good on the 502: the client waits and makes a new one.
  await until(async () => (await pageLog(page)).states.some((state) => state.state === 'reconnecting' && state.retryInMs !== undefined), 15_000, 'the client\'s own reconnect loop')
  const away = await publishAll(b.url, 'failover', 5, 5)

  const restarted = Date.now()
  a = await HeraldProcess.start({ ...env, PORT: String(port) })
  await until(async () => await lastState(page) === 'open', 30_000, 'the page open again')
  const reopenedMs = Date.now() - restarted
  const after = await publishAll(b.url, 'failover', 5, 10)
  await waitForEvents(page, 15)
  assert.deepEqual(await idsOf(page), [...before, ...away, ...after], 'every event once, in order: the missed ones by resume')
  const states = (await pageLog(page)).states
  t.diagnostic(`open again ${reopenedMs} ms after the upstream restarted; states: ${JSON.stringify(states)}`)
})

// Both ways a page gets its stream: through the shared worker, and on its own (the leader path uses the same code).
for (const sharing of ['worker', 'local'] as const) {
  test(`token provider (${sharing}): the stream is reopened with a fresh token before each expires, resuming without loss or duplicate`, { timeout: 90_000 }, async (t) => {
    // Every topic needs a token; each token lives 5 s, so the client must reopen before each expiry. The stream stays
    // open while the provider is asked, 2 s before expiry: room for the provider's round trip on a loaded machine.
    const { url, log } = await build(t, { HERALD_JWT_SECRET: SECRET, HERALD_PUBLIC_SUBSCRIBE: 'false', LOG_LEVEL: 'info' })
    const publisher = { authorization: `Bearer ${token({ publish: ['**'] })}` }
    const { browser, close } = await launchChromium()
    t.after(close)
    const context = await browser.newContext()
    let minted = 0
    await context.exposeFunction('mintToken', () => { minted++; return token({ subscribe: ['private/**'], expiresIn: 5 }) })
    await servePage(context, url)
    const tabs = [await openTab(context, url), await openTab(context, url)]
    for (const tab of tabs) assert.equal(await startClient(tab, ['private/chat'], { useToken: true, shared: sharing === 'worker' }), sharing)
    await until(async () => (await Promise.all(tabs.map(lastState))).every((state) => state === 'open'), 10_000, 'both tabs open')

    const loop = publishLoop(url, 'private/chat', { headers: publisher })
    await new Promise((resolve) => setTimeout(resolve, 12_000))
    const ids = await stopPublishing(loop)
    for (const tab of tabs) {
      await waitForEvents(tab, ids.length)
      assert.deepEqual(await idsOf(tab), ids, 'every event once, in order, across the token refreshes')
    }
    const closed = log.filter((line) => line.msg === 'stream closed').map((line) => line.reason)
    const streams = streamRequests(log)
    t.diagnostic(`${sharing}: ${ids.length} events over 12 s; ${minted} tokens minted; ${streams.length} streams; closed: ${JSON.stringify(closed)}`)
    assert.ok(streams.length >= 3, `reopened with fresh tokens (${streams.length} streams)`)
    // Only the first stream of each connection owner (the worker, or each page of its own) starts without an id.
    const fresh = streams.filter((query) => query.get('lastEventId') === null).length
    assert.equal(fresh, sharing === 'worker' ? 1 : tabs.length, 'each reopen resumes from an id')
    assert.ok(streams.every((query) => query.get('access_token') !== null), 'every stream carries a token')
    assert.ok(!closed.includes('token-expired'), 'no stream outlived its token')
    assert.ok(minted >= streams.length, 'a token for each stream')
  })
}

test('a page of its own (shared: false): a refusal shows as refused with its reason and retryInMs, never as open; a reset as onReset; only the event types asked for', { timeout: 90_000 }, async (t) => {
  const { url } = await build(t, { HERALD_MAX_CONNECTIONS: '1' })
  const occupant = await openStream(`${url}/v1/stream?topic=other`)
  t.after(occupant.close)
  const { browser, close } = await launchChromium()
  t.after(close)
  const context = await browser.newContext()
  await servePage(context, url)
  const page = await openTab(context, url)
  // An id of another epoch: Herald answers with herald.reset (epoch-changed) before going on live.
  assert.equal(await startClient(page, ['chat'], { shared: false, lastEventId: 'zzzz-5', types: ['message', 'note'] }), 'local')
  await until(async () => (await pageLog(page)).states.filter((state) => state.state === 'refused').length >= 2, 20_000, 'two refusals in the page')
  occupant.close()
  const refused = (await pageLog(page)).states.filter((state) => state.state === 'refused')
  for (const [index, state] of refused.entries()) {
    assert.equal(state.reason, 'instance-full')
    // Herald's retry: is 5 s jittered over 0.5-1.5.
    assert.ok(typeof state.retryInMs === 'number' && state.retryInMs >= 2_500 && state.retryInMs <= 7_500, JSON.stringify(state))
    assert.equal(state.attempt, index + 1, 'attempt counts the refusals')
  }
  // The client tries again after Herald's jittered retryMs (5 s × 0.5-1.5).
  await until(async () => (await pageLog(page)).resets.length === 1, 15_000, 'the reset notice')
  assert.deepEqual((await pageLog(page)).resets, [{ reason: 'epoch-changed', topics: ['chat'], lastEventId: 'zzzz-5' }])
  await until(async () => await lastState(page) === 'open', 5_000, 'open')
  const states = (await pageLog(page)).states.map((state) => state.state)
  assert.equal(states.indexOf('open'), states.length - 1, `open only once Herald accepted the stream: ${JSON.stringify(states)}`)
  const note = await publish(url, { topic: 'chat', type: 'note', data: 'a note' })
  await publish(url, { topic: 'chat', type: 'typing', data: 'not asked for' })
  const message = await publish(url, { topic: 'chat', data: 'hello' })
  const events = await waitForEvents(page, 2)
  assert.deepEqual(events, [
    { topic: 'chat', data: 'a note', type: 'note', id: note.body.id },
    { topic: 'chat', data: 'hello', type: 'message', id: message.body.id }
  ])
})

test('SharedWorker: a tab that asks for history (lastEventId) gets it on the shared stream; the other tabs get nothing twice', { timeout: 90_000 }, async (t) => {
  const { app, url } = await build(t)
  const { browser, close } = await launchChromium()
  t.after(close)
  const context = await browser.newContext()
  await servePage(context, url)
  const first = await openTab(context, url)
  await startClient(first, ['chat'])
  await until(async () => await lastState(first) === 'open', 10_000, 'the first tab open')
  const early = await publishAll(url, 'chat', 5)
  await waitForEvents(first, 5)

  // A second tab remembers event 2 from an earlier visit: the stream is reopened from there, for it.
  const second = await openTab(context, url)
  await startClient(second, ['chat'], { lastEventId: early[1] })
  await waitForEvents(second, 3)
  const late = await publishAll(url, 'chat', 3, 5)
  await waitForEvents(second, 6)
  await waitForEvents(first, 8)
  assert.deepEqual(await idsOf(second), [...early.slice(2), ...late])
  assert.deepEqual(await idsOf(first), [...early, ...late])
  assert.equal(app.hub.streamCount, 1)
})

test('a shared worker script that does not load (404, another origin, CSP): the tabs fall back to a leader and still share one stream', { timeout: 60_000 }, async (t) => {
  const { app, url } = await build(t)
  const { browser, close } = await launchChromium()
  t.after(close)
  const context = await browser.newContext()
  await servePage(context, url)
  const tabs = [await openTab(context, url), await openTab(context, url)]
  for (const tab of tabs) await startClient(tab, ['chat'], { workerUrl: '/client/no-such-worker.js' })
  await until(async () => (await Promise.all(tabs.map(async (tab) => await tab.evaluate(() => (globalThis as any).harness.herald.sharing)))).every((sharing) => sharing === 'leader'), 10_000, 'both tabs on the leader fallback')
  await until(async () => (await Promise.all(tabs.map(lastState))).every((state) => state === 'open') && app.hub.streamCount === 1, 10_000, 'one stream')
  const ids = await publishAll(url, 'chat', 3)
  for (const tab of tabs) {
    await waitForEvents(tab, 3)
    assert.deepEqual(await idsOf(tab), ids)
  }
})

test('SharedWorker without Web Locks (not a secure context): a closed tab says goodbye, and its topics leave the stream', { timeout: 60_000 }, async (t) => {
  const { app, url } = await build(t)
  const { browser, close } = await launchChromium()
  t.after(close)
  const context = await browser.newContext()
  await context.addInitScript(() => { delete (globalThis as any).Navigator.prototype.locks })
  await servePage(context, url)
  const stays = await openTab(context, url)
  const leaves = await openTab(context, url)
  assert.equal(await startClient(stays, ['chat']), 'worker')
  assert.equal(await startClient(leaves, ['chat', 'news']), 'worker')
  await until(() => app.hub.listenerCount('news') === 1 && app.hub.streamCount === 1, 10_000, 'one stream with news')
  // As a person closes a tab: the page's unload steps run (pagehide).
  await leaves.close({ runBeforeUnload: true })
  await until(() => app.hub.listenerCount('news') === 0 && app.hub.streamCount === 1, 10_000, 'news gone with its tab')
  const ids = await publishAll(url, 'chat', 2)
  await waitForEvents(stays, 2)
  assert.deepEqual(await idsOf(stays), ids)
})

test('a token provider that returns garbage: 401 three times, each with a new token, then unauthorized and stopped, with Herald\'s code', { timeout: 60_000 }, async (t) => {
  const { url } = await build(t, { HERALD_JWT_SECRET: SECRET, HERALD_PUBLIC_SUBSCRIBE: 'false' })
  const { browser, close } = await launchChromium()
  t.after(close)
  const context = await browser.newContext()
  let minted = 0
  await context.exposeFunction('mintToken', () => { minted++; return 'not-a-jwt' })
  await servePage(context, url)
  const page = await openTab(context, url)
  let streamRequests = 0
  page.on('request', (request) => { if (new URL(request.url()).pathname === '/v1/stream') streamRequests++ })
  await startClient(page, ['private/chat'], { useToken: true, shared: false })
  await until(async () => (await pageLog(page)).states.at(-1)?.stopped === true, 15_000, 'the client to stop')
  await new Promise((resolve) => setTimeout(resolve, 2_000))
  const { states } = await pageLog(page)
  t.diagnostic(JSON.stringify(states))
  const refusals = states.filter((state) => state.state === 'unauthorized')
  assert.deepEqual(refusals.map((state) => [state.attempt, state.status, state.code, state.retryInMs !== undefined, state.stopped === true]), [
    [1, 401, 'HERALD_TOKEN_INVALID', true, false],
    [2, 401, 'HERALD_TOKEN_INVALID', true, false],
    [3, 401, 'HERALD_TOKEN_INVALID', false, true]
  ])
  assert.ok(!states.some((state) => state.state === 'open'), 'never open')
  assert.equal(streamRequests, 3, 'three requests, then none')
  assert.equal(minted, 3, 'a new token for each')
})

for (const sharing of ['worker', 'local'] as const) {
  test(`a token provider that fails (${sharing}): the open stream stays open while its token is valid and says why; token-error once it expired; open again when the provider recovers`, { timeout: 60_000 }, async (t) => {
    const { url } = await build(t, { HERALD_JWT_SECRET: SECRET, HERALD_PUBLIC_SUBSCRIBE: 'false' })
    const publisher = { authorization: `Bearer ${token({ publish: ['**'] })}` }
    const { browser, close } = await launchChromium()
    t.after(close)
    const context = await browser.newContext()
    let failing = false
    await context.exposeFunction('mintToken', () => {
      if (failing) throw new Error('the auth server is down')
      return token({ subscribe: ['private/**'], expiresIn: 5 })
    })
    await servePage(context, url)
    const page = await openTab(context, url)
    await startClient(page, ['private/chat'], { useToken: true, shared: sharing === 'worker' })
    await until(async () => await lastState(page) === 'open', 10_000, 'open')
    failing = true
    // The refresh, a fifth of the token's 5 s before it expires, fails: the stream stays open and says so.
    await until(async () => /token provider failed/.test((await pageLog(page)).states.at(-1)?.message ?? ''), 10_000, 'the failed refresh in the page')
    assert.equal(await lastState(page), 'open')
    const during = await publish(url, { topic: 'private/chat', data: 'still open' }, publisher)
    await waitForEvents(page, 1)
    assert.equal((await pageLog(page)).events[0]?.id, during.body.id)
    // Herald ends the stream when the token expires; the next attempt's token fails: token-error, retried.
    await until(async () => (await pageLog(page)).states.some((state) => state.state === 'token-error'), 10_000, 'token-error')
    const tokenError = (await pageLog(page)).states.find((state) => state.state === 'token-error')
    assert.match(tokenError?.message ?? '', /auth server is down/)
    assert.ok(tokenError?.retryInMs !== undefined)
    const missed = await publish(url, { topic: 'private/chat', data: 'while away' }, publisher)
    failing = false
    await until(async () => await lastState(page) === 'open', 10_000, 'open again')
    await waitForEvents(page, 2)
    assert.deepEqual((await pageLog(page)).events.map((event) => event.id), [during.body.id, missed.body.id], 'resumed without loss')
    t.diagnostic(JSON.stringify((await pageLog(page)).states))
  })
}
