import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createServer, type ServerResponse } from 'node:http'
import { join } from 'node:path'
import { test } from 'node:test'
import type { Page } from 'playwright-core'
import { until } from './helper.js'
import { launchChromium } from './helpers/browser.js'
import { buildClient } from './helpers/client-build.js'
import { openTab, pageLog, servePage, startClient, waitForEvents } from './helpers/client-page.js'

buildClient()

interface StoredEvent { id: string, topic: string, data: unknown }

/**
 * A stand-in for Herald whose event ids are opaque, as the multi-topic ids will be: long, with '.' and '~', and
 * out of order as text ('~10' sorts before '~9'). It serves the built client at /client/, and streams that
 * replay what follows `lastEventId`, then go on live.
 */
async function opaqueHerald (): Promise<{ url: string, publish: (topic: string, data: unknown) => string, streams: () => Array<string | null>, close: () => Promise<void> }> {
  const events: StoredEvent[] = []
  const open = new Set<{ topics: string[], response: ServerResponse }>()
  const requested: Array<string | null> = []
  const frame = (event: StoredEvent): string => `id: ${event.id}\nevent: message\ndata: ${JSON.stringify({ topic: event.topic, data: event.data })}\n\n`
  const server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://x')
    if (url.pathname.startsWith('/client/')) {
      try {
        const body = readFileSync(join('client/dist', url.pathname.slice('/client/'.length)))
        response.writeHead(200, { 'content-type': 'text/javascript' }).end(body)
      } catch {
        response.writeHead(404).end()
      }
      return
    }
    if (url.pathname !== '/v1/stream') {
      response.writeHead(404).end()
      return
    }
    const topics = url.searchParams.getAll('topic')
    const after = url.searchParams.get('lastEventId')
    requested.push(after)
    response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    response.write(': herald\nretry: 500\n')
    if (after !== null) {
      const from = events.findIndex((event) => event.id === after)
      for (const event of events.slice(from + 1)) if (topics.includes(event.topic)) response.write(frame(event))
    }
    const stream = { topics, response }
    open.add(stream)
    request.on('close', () => open.delete(stream))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  return {
    url: `http://127.0.0.1:${port}`,
    publish (topic, data) {
      const n = events.length
      const event = { id: `v2.${topic}~${n}.other~${997 - n}.${'k'.repeat(48)}`, topic, data }
      events.push(event)
      for (const stream of open) if (stream.topics.includes(topic)) stream.response.write(frame(event))
      return event.id
    },
    streams: () => [...requested],
    close: async () => {
      for (const stream of open) stream.response.destroy()
      await new Promise((resolve) => server.close(resolve))
    }
  }
}

async function idsOf (page: Page): Promise<string[]> {
  return (await pageLog(page)).events.map((event) => event.id)
}

for (const shared of [true, false]) {
  test(`opaque event ids (${shared ? 'SharedWorker' : 'Web Locks leader'}): a tab asking for history older than the shared stream gets it; the tab already there gets nothing twice and nothing from before it started; no made-up reset`, { timeout: 60_000 }, async (t) => {
    const herald = await opaqueHerald()
    t.after(herald.close)
    const { browser, close } = await launchChromium()
    t.after(close)
    const context = await browser.newContext()
    if (!shared) await context.addInitScript(() => { delete (globalThis as any).SharedWorker })
    await servePage(context, herald.url)
    const ids: string[] = []
    // Published before any tab: the first tab starts live, after them.
    for (let n = 0; n < 3; n++) ids.push(herald.publish('chat', { n }))
    const first = await openTab(context, herald.url)
    assert.equal(await startClient(first, ['chat']), shared ? 'worker' : 'leader')
    await until(async () => (await pageLog(first)).states.at(-1)?.state === 'open', 10_000, 'the first tab open')
    for (let n = 3; n < 12; n++) ids.push(herald.publish('chat', { n }))
    await waitForEvents(first, 9)
    // The second tab remembers the very first event (an id the stream never delivered): the stream reopens from it.
    const second = await openTab(context, herald.url)
    await startClient(second, ['chat'], { lastEventId: ids[0] })
    await waitForEvents(second, 11)
    for (let n = 12; n < 15; n++) ids.push(herald.publish('chat', { n }))
    await waitForEvents(second, 14)
    await waitForEvents(first, 12)
    await new Promise((resolve) => setTimeout(resolve, 500))
    assert.deepEqual(await idsOf(second), ids.slice(1), 'the history asked for, then live, each once')
    assert.deepEqual(await idsOf(first), ids.slice(3), 'nothing twice, nothing from before it started')
    for (const page of [first, second]) assert.deepEqual((await pageLog(page)).resets, [])
    t.diagnostic(`stream requests (lastEventId): ${JSON.stringify(herald.streams().map((id) => id === null ? null : ids.indexOf(id)))}`)
  })
}
