/**
 * The shared worker behind `createHerald({ shared: true })`: one per stream URL (its name), owning the one stream
 * of every page of the origin that subscribes there, and sending each page the events of its subscriptions.
 */
import { Fanout } from './fanout.js'
import { tabLockName, tabOf, type OwnerMessage, type StreamConfig, type TabMessage } from './protocol.js'

interface Page {
  port: MessagePort
  hasToken: boolean
}

interface TokenRequest {
  tab: string
  resolve: (token: string | undefined) => void
  reject: (error: Error) => void
}

/** How long a page may take to hand over a token before another page is asked (on the next attempt). */
const TOKEN_TIMEOUT_MS = 10_000

const pages = new Map<string, Page>()
const tokenRequests = new Map<number, TokenRequest>()
let requests = 0
let fanout: Fanout | undefined

function send (message: OwnerMessage): void {
  if (message.kind === 'event' || message.kind === 'reset' || message.kind === 'covered') {
    // One message per page, naming only its own subscriptions.
    const byPage = new Map<string, string[]>()
    for (const key of message.subs) {
      const tab = tabOf(key)
      byPage.set(tab, [...(byPage.get(tab) ?? []), key])
    }
    for (const [tab, subs] of byPage) pages.get(tab)?.port.postMessage({ ...message, subs })
  } else if (message.kind === 'token-request') {
    pages.get(message.tab)?.port.postMessage(message)
  } else {
    for (const page of pages.values()) page.port.postMessage(message)
  }
}

/** Asks the page that came last among those with a token provider. */
async function token (): Promise<string | undefined> {
  const holder = [...pages].reverse().find(([, page]) => page.hasToken)
  if (holder === undefined) return undefined
  const [tab] = holder
  const request = ++requests
  return await new Promise<string | undefined>((resolve, reject) => {
    const timer = setTimeout(() => finish(request, new Error('no token from the page in time')), TOKEN_TIMEOUT_MS)
    tokenRequests.set(request, {
      tab,
      resolve: (value) => { clearTimeout(timer); resolve(value) },
      reject: (error) => { clearTimeout(timer); reject(error) }
    })
    send({ kind: 'token-request', tab, request })
  })
}

function finish (request: number, outcome: Error | { token: string | undefined }): void {
  const pending = tokenRequests.get(request)
  if (pending === undefined) return
  tokenRequests.delete(request)
  if (outcome instanceof Error) pending.reject(outcome)
  else pending.resolve(outcome.token)
}

function removePage (tab: string): void {
  if (!pages.delete(tab)) return
  fanout?.removeTab(tab)
  for (const [request, pending] of tokenRequests) {
    if (pending.tab === tab) finish(request, new Error('the page left'))
  }
}

/** Waits on the page's own lock, granted when the page is gone. */
function watch (config: StreamConfig, tab: string): void {
  if (!('locks' in navigator)) return
  navigator.locks.request(tabLockName(config, tab), () => removePage(tab)).catch(() => {})
}

function receive (port: MessagePort, message: TabMessage): void {
  switch (message.kind) {
    case 'hello':
      fanout ??= new Fanout({ config: message.config, token, send })
      if (!pages.has(message.tab)) watch(message.config, message.tab)
      pages.set(message.tab, { port, hasToken: message.hasToken })
      // A page that comes later learns where the stream is; before its first subscription there is nothing to say.
      if (fanout.state.state !== 'closed') port.postMessage({ kind: 'state', state: fanout.state } satisfies OwnerMessage)
      break
    case 'token':
      finish(message.request, message.error === undefined ? { token: message.token } : new Error(message.error))
      break
    case 'bye':
      removePage(message.tab)
      break
    default:
      fanout?.receive(message)
  }
}

const scope = globalThis as unknown as { onconnect: ((event: MessageEvent) => void) | null }
scope.onconnect = (event) => {
  const port = event.ports[0]
  if (port === undefined) return
  port.onmessage = (message: MessageEvent<TabMessage>) => receive(port, message.data)
  port.start()
}
