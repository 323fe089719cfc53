import { backoffDelay, type Backoff } from './backoff.js'
import { refreshDelay } from './token.js'
import type { ResetNotice, StreamState } from './types.js'

/** An event as the EventSource hands it over: data still JSON text (the envelope). */
export interface RawEvent {
  type: string
  data: string
  id: string
}

export interface EventStreamOptions {
  /** The absolute stream URL; topics, `envelope`, `lastEventId` and `access_token` are added to its query. */
  url: string
  withCredentials: boolean
  backoff: Backoff
  /** Asked before every connection; undefined means no token. */
  token: () => Promise<string | undefined>
  onEvent: (event: RawEvent) => void
  onReset: (notice: ResetNotice) => void
  onState: (state: StreamState) => void
}

const CONNECTING = 0
const OPEN = 1
const CLOSED = 2

/**
 * One EventSource on a set of topics, kept alive. The browser reconnects by itself after a stream that ended
 * (with Last-Event-ID), but an EventSource that got a non-200 answer (a balancer's 502) or a network error on
 * reconnecting is closed for good: then this waits a jittered, doubling delay and creates a new one, resuming
 * with the `lastEventId` query parameter (a new EventSource cannot be given the header). A token is asked for
 * before each connection and the stream is reopened with a fresh one before it expires.
 *
 * A reopen (new topics, new token) closes the old EventSource and resumes on the new one from the last id, so
 * nothing is missed and nothing comes twice. Before the first event there is no id to resume from: then the old
 * EventSource stays until the new one is open, so only an event still on its way in that instant could be missed.
 */
export class EventStream {
  private source: EventSource | undefined
  /** The EventSource being replaced while the new one opens, when there is no id to resume from. */
  private outgoing: EventSource | undefined
  private topics: string[] = []
  private readonly types = new Set<string>()
  private position: string | undefined
  private failures = 0
  private opened = false
  private generation = 0
  private retryTimer: ReturnType<typeof setTimeout> | undefined
  private refreshTimer: ReturnType<typeof setTimeout> | undefined
  private current: StreamState = { state: 'closed', attempt: 0 }

  constructor (private readonly options: EventStreamOptions) {}

  /** The id of the last event received, where a new connection resumes. */
  get lastEventId (): string | undefined {
    return this.position
  }

  get state (): StreamState {
    return this.current
  }

  /** True while the stream is wanted (opened and not closed since), whatever its connection's state. */
  get active (): boolean {
    return this.current.state !== 'closed'
  }

  /** (Re)opens the stream on `topics`, resuming after `resumeFrom` when given, else after the last event. */
  open (topics: string[], types: Iterable<string>, resumeFrom?: string): void {
    this.topics = topics
    for (const type of types) this.types.add(type)
    if (resumeFrom !== undefined) this.position = resumeFrom
    this.replace()
  }

  /** Listens for more event types on the open stream; no reconnection needed. */
  listenTo (types: Iterable<string>): void {
    for (const type of types) {
      if (this.types.has(type)) continue
      this.types.add(type)
      for (const source of [this.source, this.outgoing]) if (source !== undefined) this.listen(source, type)
    }
  }

  close (): void {
    this.generation++
    clearTimeout(this.retryTimer)
    clearTimeout(this.refreshTimer)
    this.dispose(this.source)
    this.dispose(this.outgoing)
    this.source = undefined
    this.outgoing = undefined
    this.position = undefined
    this.opened = false
    this.failures = 0
    this.setState({ state: 'closed', attempt: 0 })
  }

  private replace (): void {
    clearTimeout(this.retryTimer)
    clearTimeout(this.refreshTimer)
    const generation = ++this.generation
    const old = this.source
    this.source = undefined
    if (old !== undefined && this.position === undefined && old.readyState === OPEN) {
      this.dispose(this.outgoing)
      this.outgoing = old
    } else {
      this.dispose(old)
    }
    this.start(generation)
  }

  private start (generation: number): void {
    this.connect(generation).catch(() => {
      // new EventSource() threw (a URL it refuses): retried like any failed attempt.
      if (generation !== this.generation) return
      this.failures++
      this.failed(generation)
    })
  }

  private async connect (generation: number): Promise<void> {
    this.setState({ state: this.opened ? 'reconnecting' : 'connecting', attempt: this.failures })
    let token: string | undefined
    try {
      token = await this.options.token()
    } catch {
      if (generation === this.generation) {
        this.failures++
        this.failed(generation)
      }
      return
    }
    if (generation !== this.generation) return
    const url = new URL(this.options.url)
    for (const topic of this.topics) url.searchParams.append('topic', topic)
    url.searchParams.set('envelope', '1')
    if (this.position !== undefined) url.searchParams.set('lastEventId', this.position)
    if (token !== undefined) url.searchParams.set('access_token', token)
    const source = new EventSource(url.href, { withCredentials: this.options.withCredentials })
    this.source = source
    source.onopen = () => {
      if (source !== this.source) return
      this.failures = 0
      this.opened = true
      this.dispose(this.outgoing)
      this.outgoing = undefined
      this.setState({ state: 'open', attempt: 0 })
      this.scheduleRefresh(generation, token)
    }
    source.onerror = () => {
      if (source === this.outgoing && source.readyState !== OPEN) {
        this.dispose(source)
        this.outgoing = undefined
      }
      if (source !== this.source) return
      this.failures++
      clearTimeout(this.refreshTimer)
      if (source.readyState === CLOSED) {
        this.dispose(source)
        this.source = undefined
        this.failed(generation)
      } else if (source.readyState === CONNECTING) {
        // The stream ended or dropped: the browser reconnects by itself after the server's `retry:`.
        this.setState({ ...this.current, state: 'reconnecting', attempt: this.failures, retryInMs: undefined })
      }
    }
    for (const type of this.types) this.listen(source, type)
    source.addEventListener('herald.reset', (event) => {
      if (source !== this.source && source !== this.outgoing) return
      const notice = parse(event.data) as ResetNotice | undefined
      if (notice !== undefined && Array.isArray(notice.topics)) this.options.onReset(notice)
    })
    source.addEventListener('herald.unavailable', (event) => {
      if (source !== this.source) return
      const refusal = parse(event.data) as { reason?: unknown, retryMs?: unknown } | undefined
      // Herald refused for now and ends the stream: the browser retries after its jittered `retry:`.
      this.setState({
        state: 'reconnecting',
        attempt: this.failures + 1,
        ...(typeof refusal?.reason === 'string' ? { reason: refusal.reason } : {}),
        ...(typeof refusal?.retryMs === 'number' ? { retryInMs: refusal.retryMs } : {})
      })
    })
  }

  private listen (source: EventSource, type: string): void {
    source.addEventListener(type, (event) => {
      if (source !== this.source && source !== this.outgoing) return
      const message = event as MessageEvent<string>
      if (message.lastEventId !== '') this.position = message.lastEventId
      this.options.onEvent({ type, data: message.data, id: message.lastEventId })
    })
  }

  /** The connection could not be made or was refused for good: try again after a backoff delay. */
  private failed (generation: number): void {
    const retryInMs = backoffDelay(Math.max(1, this.failures), this.options.backoff)
    this.setState({ state: this.opened ? 'reconnecting' : 'connecting', attempt: this.failures, retryInMs })
    this.retryTimer = setTimeout(() => {
      if (generation === this.generation) this.start(generation)
    }, retryInMs)
  }

  /** Reopens with a fresh token before this one expires: resumes from the last id, so nothing is lost. */
  private scheduleRefresh (generation: number, token: string | undefined): void {
    if (token === undefined) return
    const delay = refreshDelay(token, Date.now())
    if (delay === undefined) return
    clearTimeout(this.refreshTimer)
    this.refreshTimer = setTimeout(() => {
      if (generation === this.generation) this.replace()
    }, delay)
  }

  private dispose (source: EventSource | undefined): void {
    if (source === undefined) return
    source.onopen = null
    source.onerror = null
    source.close()
  }

  private setState (state: StreamState): void {
    const next: StreamState = { state: state.state, attempt: state.attempt }
    if (state.retryInMs !== undefined) next.retryInMs = state.retryInMs
    if (state.reason !== undefined) next.reason = state.reason
    const now = this.current
    if (now.state === next.state && now.attempt === next.attempt && now.retryInMs === next.retryInMs && now.reason === next.reason) return
    this.current = next
    this.options.onState(next)
  }
}

function parse (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}
