import { toHeraldEvent, type HeraldEvent } from './event.js'
import { parseEventId, planReplay, type HistoryRead } from './replay.js'
import { Subscription } from './subscription.js'

/** Where a broker keeps what the fan-out needs beyond live events: the newest id and each topic's history. */
export interface HistorySource {
  head (): Promise<number>
  read (topics: readonly string[], afterId: number): Promise<HistoryRead>
}

/** How a broker starts and stops receiving a topic (Redis: SUBSCRIBE / UNSUBSCRIBE). */
export interface TopicFeed {
  activate (topic: string): Promise<void>
  deactivate (topic: string): void
}

export interface FanoutOptions {
  maxQueueBytes: number
  historyTtlMs: number
  /** Told when a catch-up could not reach history; the subscription is retried at the next resync. */
  onCatchUpError?: (error: unknown) => void
}

interface CatchUp {
  /** The client's Last-Event-ID, until the first catch-up has honoured it. */
  lastEventId?: string
  started: boolean
  running: boolean
  again: boolean
}

/**
 * The part both brokers share: the local listeners of each topic, and the hand-over from history to live.
 * A topic is activated on its first local listener and deactivated after its last, so an instance holds
 * one upstream subscription per topic however many clients listen.
 */
export class Fanout {
  private readonly listeners = new Map<string, Set<Subscription>>()
  private readonly activations = new Map<string, Promise<void>>()
  private readonly catchUps = new WeakMap<Subscription, CatchUp>()

  constructor (
    private readonly source: HistorySource,
    private readonly feed: TopicFeed,
    private readonly options: FanoutOptions
  ) {}

  subscribe (topics: readonly string[], lastEventId?: string): Subscription {
    const subscription = new Subscription(topics, {
      maxQueueBytes: this.options.maxQueueBytes,
      onDestroy: (destroyed) => this.remove(destroyed)
    })
    for (const topic of topics) {
      let set = this.listeners.get(topic)
      if (set === undefined) {
        set = new Set()
        this.listeners.set(topic, set)
        const activation = this.feed.activate(topic)
        // Catch-ups await it and handle a failure; this keeps a failure after everyone left from crashing.
        activation.catch(() => {})
        this.activations.set(topic, activation)
      }
      set.add(subscription)
    }
    const state: CatchUp = { started: false, running: false, again: false }
    if (lastEventId !== undefined) state.lastEventId = lastEventId
    this.catchUps.set(subscription, state)
    this.catchUp(subscription)
    return subscription
  }

  /** Hands a live event to every local listener of a topic. */
  dispatch (topic: string, event: HeraldEvent): void {
    const set = this.listeners.get(topic)
    if (set === undefined) return
    for (const subscription of set) subscription.deliver(event)
  }

  /** Holds live delivery on every open subscription until its next catch-up. */
  holdAll (): void {
    for (const set of this.listeners.values()) for (const subscription of set) subscription.hold()
  }

  /** Re-reads history for every open subscription, after the live feed may have missed events. */
  resync (): void {
    const seen = new Set<Subscription>()
    for (const set of this.listeners.values()) {
      for (const subscription of set) {
        if (seen.has(subscription)) continue
        seen.add(subscription)
        subscription.hold()
        this.catchUp(subscription)
      }
    }
  }

  /** Topics with at least one local listener. */
  get activeTopics (): string[] {
    return [...this.listeners.keys()]
  }

  listenerCount (topic: string): number {
    return this.listeners.get(topic)?.size ?? 0
  }

  get subscriptionCount (): number {
    const all = new Set<Subscription>()
    for (const set of this.listeners.values()) for (const subscription of set) all.add(subscription)
    return all.size
  }

  /** Ends every subscription; their streams finish with what was already queued. */
  endAll (): void {
    for (const set of [...this.listeners.values()]) {
      for (const subscription of [...set]) subscription.finish()
    }
  }

  private remove (subscription: Subscription): void {
    for (const topic of subscription.topics) {
      const set = this.listeners.get(topic)
      if (set === undefined || !set.delete(subscription) || set.size > 0) continue
      this.listeners.delete(topic)
      this.activations.delete(topic)
      this.feed.deactivate(topic)
    }
  }

  /**
   * Brings a subscription up to date from history while its live events are held, then releases them.
   * Runs once at a time per subscription; a resync asked for meanwhile runs right after.
   */
  private catchUp (subscription: Subscription): void {
    const state = this.catchUps.get(subscription)
    if (state === undefined) return
    if (state.running) {
      state.again = true
      return
    }
    state.running = true
    this.runCatchUp(subscription, state).then(() => {
      state.running = false
      if (state.again && !subscription.destroyed) {
        state.again = false
        this.catchUp(subscription)
      }
    }, (error: unknown) => {
      state.running = false
      state.again = false
      this.options.onCatchUpError?.(error)
    })
  }

  private async runCatchUp (subscription: Subscription, state: CatchUp): Promise<void> {
    // Subscribe before reading history: whatever is published after the read arrives live.
    await Promise.all(subscription.topics.map((topic) => this.activations.get(topic)))
    if (subscription.destroyed) return

    if (!state.started && state.lastEventId === undefined) {
      // A new client without an id starts at the newest event: it asked for nothing older.
      subscription.release(await this.source.head(), [])
      state.started = true
      return
    }
    const lastEventId = state.started ? String(subscription.position) : state.lastEventId ?? '0'
    const after = parseEventId(lastEventId)
    const read = after === undefined
      ? { head: await this.source.head(), topics: subscription.topics.map((topic) => ({ topic, events: [], trimmedThrough: 0 })) }
      : await this.source.read(subscription.topics, after)
    if (subscription.destroyed) return
    const plan = planReplay(lastEventId, read, Date.now(), this.options.historyTtlMs)
    subscription.release(plan.position, plan.events.map(toHeraldEvent), plan.reset)
    state.started = true
  }
}
