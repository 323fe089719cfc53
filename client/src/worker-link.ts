import { streamName, tabLockName, type Link, type LinkHost, type OwnerMessage, type TabMessage } from './protocol.js'

/**
 * The page's port to the shared worker that owns the stream for every page of this origin. The page holds a Web
 * Lock for as long as it lives and says hello only once it has it: the worker waits on that lock to learn that
 * the page is gone (closed, crashed, navigated away), since a MessagePort says nothing when its other end dies.
 */
export class WorkerLink implements Link {
  readonly kind = 'worker'
  private readonly port: MessagePort
  private pending: TabMessage[] | undefined = []
  private readonly stop = new AbortController()
  private releaseLock: (() => void) | undefined

  /** Throws where the worker cannot be made (another origin's script, a sandboxed page). */
  constructor (private readonly host: LinkHost, workerUrl: string | URL) {
    const worker = new SharedWorker(workerUrl, { type: 'module', name: streamName(host.config) })
    // The script did not load or failed to start: the page falls back to another way of sharing.
    worker.onerror = () => host.failed(this)
    this.port = worker.port
    this.port.onmessage = (event: MessageEvent<OwnerMessage>) => this.receive(event.data)
    this.port.start()
    if (!('locks' in navigator)) {
      // No Web Locks (not a secure context): say goodbye when the page is hidden for good or put in the
      // back/forward cache, and announce everything again if it comes back from there.
      addEventListener('pagehide', () => this.port.postMessage({ kind: 'bye', tab: host.tab } satisfies TabMessage), { signal: this.stop.signal })
      addEventListener('pageshow', (event) => { if (event.persisted) host.receive({ kind: 'owner', owner: 'worker' }) }, { signal: this.stop.signal })
      this.flush()
      return
    }
    navigator.locks.request(tabLockName(host.config, host.tab), { signal: this.stop.signal }, async () => {
      this.flush()
      await new Promise<void>((resolve) => { this.releaseLock = resolve })
    }).catch(() => {})
  }

  send (message: TabMessage): void {
    if (this.pending !== undefined) this.pending.push(message)
    else this.port.postMessage(message)
  }

  close (): void {
    this.send({ kind: 'bye', tab: this.host.tab })
    this.stop.abort()
    this.releaseLock?.()
    this.port.close()
  }

  private flush (): void {
    const pending = this.pending ?? []
    this.pending = undefined
    for (const message of pending) this.port.postMessage(message)
  }

  private receive (message: OwnerMessage): void {
    if (message.kind !== 'token-request') {
      this.host.receive(message)
      return
    }
    const reply = { kind: 'token' as const, tab: this.host.tab, request: message.request }
    this.host.token().then(
      (token) => this.send({ ...reply, token }),
      (error: unknown) => this.send({ ...reply, token: undefined, error: error instanceof Error ? error.message : String(error) })
    )
  }
}
