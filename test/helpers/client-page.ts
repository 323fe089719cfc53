import type { BrowserContext, Page } from 'playwright-core'
import { until } from '../helper.js'

/** The test page's path; the browser context answers it itself (see `openTab`), Herald serves everything else. */
const PAGE_PATH = '/herald-client-test.html'

/**
 * A page that loads the client from Herald's /client/ and keeps what its subscription receives. Options are
 * createHerald's, plus `useToken` (tokens from the test process through `mintToken`).
 */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>herald-client test page</title>
<script type="module">
import { createHerald } from '/client/herald-client.js'
const log = { events: [], resets: [], states: [] }
window.harness = {
  log,
  start (topics, options = {}) {
    const { useToken, lastEventId, types, ...heraldOptions } = options
    const herald = createHerald({
      url: '/v1/stream',
      backoff: { initialMs: 200, maxMs: 1000 },
      ...heraldOptions,
      ...(useToken ? { token: () => window.mintToken() } : {})
    })
    window.harness.herald = herald
    window.harness.subscription = herald.subscribe(topics, {
      lastEventId,
      types,
      onEvent: (event) => log.events.push(event),
      onReset: (notice) => log.resets.push(notice),
      onState: (state) => log.states.push(state)
    })
    return herald.sharing
  }
}
</script>
`

export interface ReceivedEvent {
  topic: string
  data: unknown
  type: string
  id: string
}

export interface PageLog {
  events: ReceivedEvent[]
  resets: Array<{ reason: string, topics: string[], lastEventId: string }>
  states: Array<{ state: string, attempt: number, retryInMs?: number, reason?: string, status?: number, code?: string, message?: string, stopped?: boolean }>
}

/** Answers the test page's path on `origin` in this context, without a file in public/. */
export async function servePage (context: BrowserContext, origin: string): Promise<void> {
  await context.route(`${origin}${PAGE_PATH}`, async (route) => await route.fulfill({ contentType: 'text/html; charset=utf-8', body: PAGE }))
}

/** A new tab on the test page, with the client loaded. */
export async function openTab (context: BrowserContext, origin: string): Promise<Page> {
  const page = await context.newPage()
  await page.goto(`${origin}${PAGE_PATH}`)
  await page.waitForFunction(() => (globalThis as any).harness !== undefined)
  return page
}

/** Creates the page's Herald and subscribes; returns how it shares its stream (worker, leader or local). */
export async function startClient (page: Page, topics: string[], options: Record<string, unknown> = {}): Promise<string> {
  return await page.evaluate(([topics, options]) => (globalThis as any).harness.start(topics, options), [topics, options] as const)
}

export async function pageLog (page: Page): Promise<PageLog> {
  return await page.evaluate(() => (globalThis as any).harness.log)
}

export async function lastState (page: Page): Promise<string | undefined> {
  return (await pageLog(page)).states.at(-1)?.state
}

/** Waits until the page's subscription has received `count` events. */
export async function waitForEvents (page: Page, count: number, timeoutMs = 10_000): Promise<ReceivedEvent[]> {
  let events: ReceivedEvent[] = []
  try {
    await until(async () => {
      events = (await pageLog(page)).events
      return events.length >= count
    }, timeoutMs, `${count} events in the page`)
  } catch (error) {
    throw new Error(`${(error as Error).message}; it has ${events.length}: ${JSON.stringify(events.map((event) => event.id))}`)
  }
  return events
}
