import type { ResetNotice } from './wire.js'

/** One event, as a subscription receives it. */
export interface HeraldEvent<Data = unknown> {
  /** The topic it was published to (of the subscription's topics). */
  topic: string
  /** The published `data`, JSON-parsed. */
  data: Data
  /** The SSE event type: the publish's `type`, `message` by default. */
  type: string
  /** The event id, an opaque string: pass it back as `lastEventId` to resume after it. */
  id: string
}

/** Herald's in-band notices: `herald.reset` (its data, ResetNotice) and why a stream is refused for now. */
export type { ResetNotice, ResetReason, UnavailableReason } from './wire.js'

/**
 * Where the shared stream is. `open` only once Herald has accepted the stream (a refusal never shows as open).
 * While the client will try again: `connecting` (never open yet), `reconnecting`, `refused` (Herald's in-band
 * `herald.unavailable`), `unauthorized` (401, with a fresh token from the provider) and `token-error` (the token
 * provider threw or returned something that is not a string), each with `retryInMs`. Where it gave up (`stopped`):
 * `unauthorized` (401) and `forbidden` (403) after a bounded number of fresh tokens, at once without a token provider,
 * and `rejected` (400) at once; a new subscription on the stream starts it again. `closed`: closed by the page.
 */
export type StreamStateName = 'connecting' | 'open' | 'reconnecting' | 'refused' | 'unauthorized' | 'forbidden' | 'rejected' | 'token-error' | 'closed'

/** Where the shared stream is, and why. */
export interface StreamState {
  state: StreamStateName
  /** Failed attempts since the stream was last open (refusals, errors, ended streams): 0 while open. */
  attempt: number
  /** Milliseconds until the next attempt, while the client waits to try again. */
  retryInMs?: number
  /** Why Herald refused the last attempt (`herald.unavailable`: an UnavailableReason such as `instance-full`). */
  reason?: string
  /** The HTTP status of the last failed attempt, when it got one (401, 403, 400, a balancer's 502). */
  status?: number
  /** Herald's error code for that status (`HERALD_TOKEN_INVALID`, `HERALD_FORBIDDEN`, ...). */
  code?: string
  /** Herald's message for that status, or what the token provider's failure said. */
  message?: string
  /** True when the client gave up: it will not try again until the page subscribes anew. */
  stopped?: boolean
}

export interface SubscribeOptions<Data = unknown> {
  onEvent?: (event: HeraldEvent<Data>) => void
  onReset?: (notice: ResetNotice) => void
  onState?: (state: StreamState) => void
  /**
   * SSE event types to receive (default `['message']`): a publish with another `type` reaches only subscriptions
   * that name it.
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
  /** Send cookies on a cross-origin stream (fetch's `credentials: 'include'`). */
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
