import { ArrivalOrder } from './arrival-order.js'
import { DEFAULT_BACKOFF } from './backoff.js'
import { LeaderLink } from './leader-link.js'
import { LocalLink } from './local-link.js'
import { subscriptionKey, type Link, type LinkHost, type OwnerMessage, type StreamConfig } from './protocol.js'
import type { Herald, HeraldOptions, StreamState, SubscribeOptions, Subscription } from './types.js'
import { WorkerLink } from './worker-link.js'

export type { BackoffOptions, Herald, HeraldEvent, HeraldOptions, ResetNotice, ResetReason, StreamState, StreamStateName, SubscribeOptions, Subscription, UnavailableReason } from './types.js'

/**
 * Subscribes a page to Herald topics over one Server-Sent Events stream shared by all its tabs:
 *
 * ```ts
 * const herald = createHerald({ url: '/v1/stream' })
 * const sub = herald.subscribe(['chat'], { onEvent (e) { console.log(e.topic, e.data) } })
 * ```
 */
export function createHerald (options: HeraldOptions): Herald {
  return new HeraldClient(options)
}

interface PageSubscription {
  readonly id: string
  readonly key: string
  readonly topics: string[]
  readonly types: string[]
  readonly options: SubscribeOptions<any>
  /** The last event id it received, or the one it asked to start after. */
  position: string | undefined
  /** The owner's stream carries it: every event of the stream moves its position on. */
  covered: boolean
}

/** The page's side: its subscriptions and handlers, and a link to whoever owns the stream. */
class HeraldClient implements Herald, LinkHost {
  readonly tab = randomId()
  readonly config: StreamConfig
  /** The ids this page received, in order: ids are opaque, and a replay after a new leader is skipped by them. */
  readonly order = new ArrivalOrder()
  private readonly subscriptions = new Map<string, PageSubscription>()
  private readonly tokenProvider: HeraldOptions['token']
  private readonly workerUrl: string | URL
  private readonly shared: boolean
  private link: Link
  private state: StreamState | undefined
  private nextId = 0
  private closed = false

  constructor (options: HeraldOptions) {
    const base = typeof location === 'undefined' ? undefined : location.href
    this.config = {
      url: new URL(options.url, base).href,
      withCredentials: options.withCredentials === true,
      backoff: { ...DEFAULT_BACKOFF, ...options.backoff }
    }
    this.tokenProvider = options.token
    this.workerUrl = options.workerUrl ?? new URL('./herald-worker.js', import.meta.url)
    this.shared = options.shared !== false
    this.link = this.openLink(this.shared)
    this.announce()
  }

  get sharing (): Link['kind'] {
    return this.link.kind
  }

  subscribe <Data = unknown>(topics: string[], options: SubscribeOptions<Data> = {}): Subscription {
    if (this.closed) throw new Error('herald: subscribe() after close()')
    if (!Array.isArray(topics) || topics.length === 0 || !topics.every((topic) => typeof topic === 'string' && topic !== '')) {
      throw new TypeError('herald: subscribe() takes a non-empty array of topic names')
    }
    const id = String(++this.nextId)
    const subscription: PageSubscription = {
      id,
      key: subscriptionKey(this.tab, id),
      topics: [...new Set(topics)],
      types: [...new Set(options.types ?? ['message'])],
      options,
      position: options.lastEventId,
      covered: false
    }
    this.subscriptions.set(id, subscription)
    this.sendSubscription(subscription)
    const state = this.state
    if (state !== undefined && state.state !== 'closed') queueMicrotask(() => this.call(subscription, 'onState', state))
    return {
      topics: subscription.topics,
      get lastEventId () { return subscription.position },
      close: () => {
        if (!this.subscriptions.delete(id) || this.closed) return
        this.link.send({ kind: 'unsubscribe', tab: this.tab, sub: id })
      }
    }
  }

  close (): void {
    if (this.closed) return
    this.closed = true
    this.subscriptions.clear()
    this.link.close()
  }

  // LinkHost

  async token (): Promise<string | undefined> {
    return this.tokenProvider === undefined ? undefined : await this.tokenProvider()
  }

  receive (message: OwnerMessage): void {
    if (this.closed) return
    switch (message.kind) {
      case 'event': {
        const targets = new Set(message.subs)
        const { event } = message
        const rank = this.order.record(event.id)
        for (const subscription of [...this.subscriptions.values()]) {
          if (!this.order.isNews(rank, subscription.position)) continue
          if (targets.has(subscription.key)) {
            subscription.position = event.id
            this.call(subscription, 'onEvent', event)
          } else if (subscription.covered) {
            subscription.position = event.id
          }
        }
        break
      }
      case 'reset':
        for (const key of message.subs) {
          const subscription = this.ownSubscription(key)
          if (subscription !== undefined) this.call(subscription, 'onReset', message.notice)
        }
        break
      case 'covered':
        for (const key of message.subs) {
          const subscription = this.ownSubscription(key)
          if (subscription !== undefined) subscription.covered = true
        }
        break
      case 'state':
        this.state = message.state
        for (const subscription of [...this.subscriptions.values()]) this.call(subscription, 'onState', message.state)
        break
      case 'owner':
        // A new leader knows nothing yet: tell it everything, each subscription from where it got to.
        this.announce()
        break
    }
  }

  failed (link: Link): void {
    if (link !== this.link || this.closed) return
    link.close()
    this.link = this.openLink(false)
    this.announce()
  }

  private openLink (tryWorker: boolean): Link {
    if (tryWorker && typeof SharedWorker === 'function') {
      try {
        return new WorkerLink(this, this.workerUrl)
      } catch {
        // Another origin's worker script, or a context without workers: share another way.
      }
    }
    const canLead = typeof BroadcastChannel === 'function' && typeof navigator !== 'undefined' && 'locks' in navigator
    if (this.shared && canLead) return new LeaderLink(this)
    return new LocalLink(this)
  }

  private announce (): void {
    const holdsLock = typeof navigator !== 'undefined' && 'locks' in navigator
    this.link.send({ kind: 'hello', tab: this.tab, config: this.config, hasToken: this.tokenProvider !== undefined, holdsLock })
    for (const subscription of this.subscriptions.values()) this.sendSubscription(subscription)
  }

  private sendSubscription (subscription: PageSubscription): void {
    subscription.covered = false
    const { id: sub, topics, types, position: after } = subscription
    this.link.send({ kind: 'subscribe', tab: this.tab, sub, topics, types, after })
  }

  private ownSubscription (key: string): PageSubscription | undefined {
    const prefix = `${this.tab}/`
    return key.startsWith(prefix) ? this.subscriptions.get(key.slice(prefix.length)) : undefined
  }

  /** Runs a handler; one that throws is reported, and does not stop the others. */
  private call<Name extends 'onEvent' | 'onReset' | 'onState'> (subscription: PageSubscription, name: Name, value: Parameters<NonNullable<SubscribeOptions[Name]>>[0]): void {
    if (!this.subscriptions.has(subscription.id)) return
    const handler = subscription.options[name] as ((value: unknown) => void) | undefined
    try {
      handler?.(value)
    } catch (error) {
      setTimeout(() => { throw error })
    }
  }
}

/** A random id for this page: crypto.randomUUID needs a secure context, getRandomValues does not. */
function randomId (): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8))
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('')
}
