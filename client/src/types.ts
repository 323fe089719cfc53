/** One event, as a subscription receives it. */
export interface HeraldEvent<Data = unknown> {
  /** The topic it was published to (of the subscription's topics). */
  topic: string
  /** The published `data`, JSON-parsed. */
  data: Data
  /** The SSE event type: the publish's `type`, `message` by default. */
  type: string
  /** The event id, `<epoch>-<seq>`: pass it back as `lastEventId` to resume after it. */
  id: string
}

/** Herald's in-band `herald.reset`: events after `lastEventId` on `topics` may be missing; reload their state. */
export interface ResetNotice {
  /** `history-trimmed`, `history-expired`, `malformed-id`, `unknown-id` or `epoch-changed`. */
  reason: string
  topics: string[]
  lastEventId: string
}

export type StreamStateName = 'connecting' | 'open' | 'reconnecting' | 'closed'

/** Where the shared stream is. */
export interface StreamState {
  state: StreamStateName
  /** Failed attempts since the stream was last open: 0 while open and on the first try. */
  attempt: number
  /** While waiting to reconnect: milliseconds until the next attempt, when the client (not the browser) waits. */
  retryInMs?: number
  /** Why Herald refused the last attempt (`herald.unavailable`: `instance-full`, `address-limit`, ...). */
  reason?: string
}

export interface SubscribeOptions<Data = unknown> {
  onEvent?: (event: HeraldEvent<Data>) => void
  onReset?: (notice: ResetNotice) => void
  onState?: (state: StreamState) => void
  /**
   * SSE event types to receive (default `['message']`): EventSource delivers only the types it listens for, so a
   * publish with another `type` reaches only subscriptions that name it.
   */
  types?: string[]
  /** Replay the retained events after this id first (e.g. the last one seen on a previous visit). */
  lastEventId?: string
}

export interface Subscription {
  readonly topics: readonly string[]
  /** The id of the last event this subscription received (or started after). */
  readonly lastEventId: string | undefined
  close: () => void
}

export interface BackoffOptions {
  /** First delay before re-creating a stream that closed for good, in ms (default 1000). */
  initialMs?: number
  /** Largest delay, in ms (default 30000). Each delay is jittered over 0.5-1.5 times its value. */
  maxMs?: number
}

export interface HeraldOptions {
  /** The stream route, e.g. `/v1/stream` or `https://push.example.com/v1/stream`. */
  url: string | URL
  /** A subscriber token for private topics, sent as `access_token`; asked again before it expires (JWT `exp`). */
  token?: () => Promise<string> | string
  /**
   * One connection for all tabs of this origin (default true): a SharedWorker, or where there is none, one tab
   * elected with Web Locks that shares its stream over a BroadcastChannel. False: a stream of this page's own.
   */
  shared?: boolean
  /** Send cookies on a cross-origin stream (EventSource's `withCredentials`). */
  withCredentials?: boolean
  backoff?: BackoffOptions
  /** Where the shared worker script is; by default `herald-worker.js` beside this module. */
  workerUrl?: string | URL
}

export interface Herald {
  subscribe: <Data = unknown>(topics: string[], options?: SubscribeOptions<Data>) => Subscription
  /** Which way this page shares its stream: `worker`, `leader` (Web Locks + BroadcastChannel) or `local`. */
  readonly sharing: 'worker' | 'leader' | 'local'
  close: () => void
}
