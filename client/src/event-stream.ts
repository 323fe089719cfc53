import type { Backoff } from './backoff.js'
import { SseParser, type SseMessage } from './sse-parser.js'
import { StreamMachine, type Outcome, type Step } from './stream-machine.js'
import { refreshDelay } from './token.js'
import type { StreamState } from './types.js'
import { RESET_EVENT, UNAVAILABLE_EVENT, type ResetNotice } from './wire.js'

/** An event as the stream carries it: data still JSON text (the envelope). */
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

/** One request for the stream, from the fetch to the end of its body. */
interface Connection {
  readonly abort: AbortController
  open: boolean
}

/**
 * One stream on a set of topics, kept alive, read with fetch rather than EventSource: EventSource hides the status
 * of a failed attempt (a 401 and a balancer's 502 look alike) and reports a refusal (`herald.unavailable`, a short
 * 200 stream) as `open`. Each attempt's outcome goes to the StreamMachine, which says what the page sees and when
 * to try again; each attempt asks for a token first, and resumes with the `lastEventId` query parameter.
 *
 * A reopen (new topics, new token) closes the old connection and resumes on the new one from the last id, so nothing
 * is missed and nothing comes twice. Before the first event there is no id to resume from: then the old connection
 * stays until the new one is open, so only an event still on its way in that instant could be missed. A token is
 * asked for before it expires while the stream stays open, so a provider that fails never closes a stream whose
 * token is still valid.
 */
export class EventStream {
  private connection: Connection | undefined
  /** The connection being replaced while the new one opens, when there is no id to resume from. */
  private outgoing: Connection | undefined
  private topics: string[] = []
  private readonly types = new Set<string>()
  private position: string | undefined
  private generation = 0
  private stopped = false
  private retryTimer: ReturnType<typeof setTimeout> | undefined
  private refreshTimer: ReturnType<typeof setTimeout> | undefined
  private current: StreamState = { state: 'closed', attempt: 0 }
  private readonly machine: StreamMachine
  private refreshFailures = 0

  constructor (private readonly options: EventStreamOptions) {
    this.machine = new StreamMachine({ backoff: options.backoff })
  }

  /** The id of the last event received, where a new connection resumes. */
  get lastEventId (): string | undefined {
    return this.position
  }

  get state (): StreamState {
    return this.current
  }

  /** True while the stream is wanted and the client has not given up on it. */
  get active (): boolean {
    return this.current.state !== 'closed' && !this.stopped
  }

  /** (Re)opens the stream on `topics`, resuming after `resumeFrom` when given, else after the last event. */
  open (topics: string[], types: Iterable<string>, resumeFrom?: string): void {
    this.topics = topics
    for (const type of types) this.types.add(type)
    if (resumeFrom !== undefined) this.position = resumeFrom
    if (this.stopped) {
      this.stopped = false
      this.machine.reset()
    }
    this.replace(undefined)
  }

  /** Takes more event types from the open stream; no reconnection needed. */
  listenTo (types: Iterable<string>): void {
    for (const type of types) this.types.add(type)
  }

  close (): void {
    this.generation++
    clearTimeout(this.retryTimer)
    clearTimeout(this.refreshTimer)
    this.dispose(this.connection)
    this.dispose(this.outgoing)
    this.connection = undefined
    this.outgoing = undefined
    this.position = undefined
    this.stopped = false
    this.machine.reset()
    this.setState({ state: 'closed', attempt: 0 })
  }

  /** Replaces the connection; `token`: one already asked for (a refresh), else it is asked for first. */
  private replace (token: { value: string | undefined } | undefined): void {
    clearTimeout(this.retryTimer)
    clearTimeout(this.refreshTimer)
    const generation = ++this.generation
    const old = this.connection
    this.connection = undefined
    if (old?.open === true && this.position === undefined) {
      this.dispose(this.outgoing)
      this.outgoing = old
    } else {
      this.dispose(old)
    }
    this.start(generation, token)
  }

  private start (generation: number, token?: { value: string | undefined }): void {
    this.attempt(generation, token).then(
      (outcome) => this.settle(generation, outcome),
      (error: unknown) => this.settle(generation, { kind: 'network', message: String(error) })
    )
  }

  private settle (generation: number, outcome: Outcome | undefined): void {
    if (outcome === undefined || generation !== this.generation) return
    this.apply(generation, this.machine.next(outcome))
  }

  private apply (generation: number, step: Step): void {
    this.setState(step.state)
    if (step.state.state === 'open') return
    clearTimeout(this.refreshTimer)
    if (step.retryInMs === undefined) {
      this.stopped = true
      return
    }
    this.retryTimer = setTimeout(() => {
      if (generation === this.generation) this.start(generation)
    }, step.retryInMs)
  }

  /** One attempt, until its stream ends; undefined when it was replaced or closed meanwhile. */
  private async attempt (generation: number, given?: { value: string | undefined }): Promise<Outcome | undefined> {
    this.setState(this.machine.attempting())
    let token: string | undefined
    if (given !== undefined) {
      token = given.value
    } else {
      try {
        token = checkToken(await this.options.token())
      } catch (error) {
        return { kind: 'token-error', message: errorMessage(error) }
      }
    }
    if (generation !== this.generation) return undefined
    const url = new URL(this.options.url)
    for (const topic of this.topics) url.searchParams.append('topic', topic)
    url.searchParams.set('envelope', '1')
    if (this.position !== undefined) url.searchParams.set('lastEventId', this.position)
    if (token !== undefined) url.searchParams.set('access_token', token)
    const connection: Connection = { abort: new AbortController(), open: false }
    this.connection = connection
    let response: Response
    try {
      response = await fetch(url.href, {
        headers: { accept: 'text/event-stream' },
        credentials: this.options.withCredentials ? 'include' : 'same-origin',
        cache: 'no-store',
        signal: connection.abort.signal
      })
    } catch (error) {
      return connection.abort.signal.aborted ? undefined : { kind: 'network', message: errorMessage(error) }
    }
    if (connection.abort.signal.aborted) return undefined
    const contentType = response.headers.get('content-type') ?? ''
    if (response.status !== 200 || !contentType.startsWith('text/event-stream') || response.body === null) {
      const body = await errorBody(response)
      return { kind: 'status', status: response.status, ...body, withToken: token !== undefined }
    }
    return await this.read(generation, connection, response.body, token)
  }

  /** Reads a 200 event stream to its end: a refusal, or an open stream until it ends. */
  private async read (generation: number, connection: Connection, body: ReadableStream<Uint8Array>, token: string | undefined): Promise<Outcome | undefined> {
    let refusal: { reason: string, retryMs: number } | undefined
    const parser = new SseParser((message) => {
      if (message.type === UNAVAILABLE_EVENT) refusal = parseRefusal(message.data)
      else this.message(connection, message)
    })
    const reader = body.getReader()
    const decoder = new TextDecoder()
    try {
      while (true) {
        const { value, done } = await reader.read()
        if (done) break
        parser.push(decoder.decode(value, { stream: true }))
        // Herald sends a refusal in one write, with the stream's opening: a first chunk without one is a stream.
        if (refusal !== undefined) break
        if (!connection.open) this.opened(generation, connection, token)
      }
    } catch (error) {
      if (connection.abort.signal.aborted) return undefined
      if (!connection.open) return { kind: 'network', message: errorMessage(error) }
    } finally {
      reader.cancel().catch(() => {})
    }
    if (connection.abort.signal.aborted || connection !== this.connection) {
      if (connection === this.outgoing) this.outgoing = undefined
      return undefined
    }
    this.connection = undefined
    if (refusal !== undefined) return { kind: 'refused', ...refusal }
    if (!connection.open) return { kind: 'network', message: 'the stream ended before it opened' }
    return parser.retryMs === undefined ? { kind: 'ended' } : { kind: 'ended', retryMs: parser.retryMs }
  }

  private opened (generation: number, connection: Connection, token: string | undefined): void {
    connection.open = true
    if (connection !== this.connection || generation !== this.generation) return
    this.dispose(this.outgoing)
    this.outgoing = undefined
    this.refreshFailures = 0
    this.apply(generation, this.machine.next({ kind: 'open' }))
    this.scheduleRefresh(generation, token)
  }

  private message (connection: Connection, message: SseMessage): void {
    if (connection !== this.connection && connection !== this.outgoing) return
    if (message.type === RESET_EVENT) {
      const notice = parse(message.data) as ResetNotice | undefined
      if (notice !== undefined && Array.isArray(notice.topics)) this.options.onReset(notice)
      return
    }
    if (!this.types.has(message.type)) return
    if (message.id !== '') this.position = message.id
    this.options.onEvent({ type: message.type, data: message.data, id: message.id })
  }

  /**
   * Before the token expires, asks for a new one while the stream stays open, then reopens with it, resuming from
   * the last id. A provider that fails is asked again after a backoff delay; the stream stays open meanwhile (until
   * Herald ends it when the token expires, and the next attempt asks again).
   */
  private scheduleRefresh (generation: number, token: string | undefined): void {
    if (token === undefined) return
    const delay = refreshDelay(token, Date.now())
    if (delay === undefined) return
    clearTimeout(this.refreshTimer)
    this.refreshTimer = setTimeout(() => this.refresh(generation), delay)
  }

  private refresh (generation: number): void {
    if (generation !== this.generation) return
    this.options.token().then(checkToken).then(
      (value) => { if (generation === this.generation) this.replace({ value }) },
      (error: unknown) => {
        if (generation !== this.generation) return
        this.refreshFailures++
        this.setState({ state: 'open', attempt: 0, message: `token provider failed (the stream stays open): ${errorMessage(error)}` })
        const delay = Math.min(this.options.backoff.maxMs, this.options.backoff.initialMs * 2 ** (this.refreshFailures - 1))
        this.refreshTimer = setTimeout(() => this.refresh(generation), delay)
      }
    )
  }

  private dispose (connection: Connection | undefined): void {
    connection?.abort.abort()
  }

  private setState (state: StreamState): void {
    const now = this.current
    const same = now.state === state.state && now.attempt === state.attempt && now.retryInMs === state.retryInMs &&
      now.reason === state.reason && now.status === state.status && now.code === state.code && now.message === state.message &&
      now.stopped === state.stopped
    if (same) return
    this.current = state
    this.options.onState(state)
  }
}

/** A token is a string; anything else the provider returns is its mistake, said as such. */
function checkToken (token: unknown): string | undefined {
  if (token === undefined || typeof token === 'string') return token
  throw new TypeError(`the token provider returned ${token === null ? 'null' : typeof token}, not a string`)
}

function errorMessage (error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/** Herald's JSON error body (`code`, `message`), when the answer has one. */
async function errorBody (response: Response): Promise<{ code?: string, message?: string }> {
  const body = parse(await response.text().catch(() => '')) as { code?: unknown, message?: unknown } | undefined
  const result: { code?: string, message?: string } = {}
  if (typeof body?.code === 'string') result.code = body.code
  if (typeof body?.message === 'string') result.message = body.message
  return result
}

function parseRefusal (text: string): { reason: string, retryMs: number } {
  const refusal = parse(text) as { reason?: unknown, retryMs?: unknown } | undefined
  return {
    reason: typeof refusal?.reason === 'string' ? refusal.reason : 'unavailable',
    retryMs: typeof refusal?.retryMs === 'number' && refusal.retryMs >= 0 ? refusal.retryMs : 1_000
  }
}

function parse (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}
