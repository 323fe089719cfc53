import type { ArrivalOrder } from './arrival-order.js'
import type { Backoff } from './backoff.js'
import type { HeraldEvent, ResetNotice, StreamState } from './types.js'

/**
 * Messages between a page and the owner of the shared stream (the shared worker, the leader tab, or the page
 * itself). Bump the version when they change: it is part of the worker's and the channel's names, so a page of a
 * new deployment never talks to an owner started by an old one.
 */
export const PROTOCOL_VERSION = 2

/** What every page of one stream agrees on: it names the worker and the channel. */
export interface StreamConfig {
  /** The absolute stream URL, without query. */
  url: string
  withCredentials: boolean
  backoff: Backoff
}

/** A page to the owner. `sub` ids are the page's own; the owner keys them as `<tab>/<sub>`. */
export type TabMessage =
  /** `holdsLock`: the page holds its tab lock (tabLockName) for as long as it lives. */
  | { kind: 'hello', tab: string, config: StreamConfig, hasToken: boolean, holdsLock: boolean }
  | { kind: 'subscribe', tab: string, sub: string, topics: string[], types: string[], after: string | undefined }
  | { kind: 'unsubscribe', tab: string, sub: string }
  | { kind: 'token', tab: string, request: number, token: string | undefined, error?: string }
  | { kind: 'bye', tab: string }

/** The owner to pages. `subs` are `<tab>/<sub>` keys: a page acts on its own and ignores the others. */
export type OwnerMessage =
  | { kind: 'event', subs: string[], event: HeraldEvent }
  | { kind: 'reset', subs: string[], notice: ResetNotice }
  /** From now on every event of the stream passes these subscriptions' positions (they are in its topics). */
  | { kind: 'covered', subs: string[] }
  | { kind: 'state', state: StreamState }
  | { kind: 'token-request', tab: string, request: number }
  /** A new owner took over (leader tabs): pages announce their subscriptions again, from where they are. */
  | { kind: 'owner', owner: string }

export function subscriptionKey (tab: string, sub: string): string {
  return `${tab}/${sub}`
}

export function tabOf (key: string): string {
  return key.slice(0, key.indexOf('/'))
}

/** The name that the worker, the locks and the channel of one stream share. */
export function streamName (config: StreamConfig): string {
  return `herald/${PROTOCOL_VERSION} ${config.withCredentials ? 'credentials ' : ''}${config.url}`
}

/** The Web Lock a page holds for as long as it lives: the owner waits on it to learn that the page is gone. */
export function tabLockName (config: StreamConfig, tab: string): string {
  return `${streamName(config)} tab ${tab}`
}

/** How a page reaches the owner of its stream. */
export interface Link {
  readonly kind: 'worker' | 'leader' | 'local'
  send: (message: TabMessage) => void
  close: () => void
}

/** What a link needs from its page. */
export interface LinkHost {
  readonly tab: string
  readonly config: StreamConfig
  /** The ids the page received, in order. */
  readonly order: ArrivalOrder
  /** Asks the page's token provider; undefined when it has none. */
  token: () => Promise<string | undefined>
  receive: (message: OwnerMessage) => void
  /** The link cannot work (the worker script did not load): the page moves to another. */
  failed: (link: Link) => void
}
