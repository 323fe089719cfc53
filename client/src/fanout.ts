import { compareEventIds, earlier, isNews } from './event-ids.js'
import { EventStream, type RawEvent } from './event-stream.js'
import { subscriptionKey, tabOf, type OwnerMessage, type StreamConfig, type TabMessage } from './protocol.js'
import type { HeraldEvent, ResetNotice, StreamState } from './types.js'

export interface FanoutOptions {
  config: StreamConfig
  token: () => Promise<string | undefined>
  /** Where messages for pages go; `event`, `reset` and `covered` name their subscriptions by key. */
  send: (message: OwnerMessage) => void
}

interface OwnedSubscription {
  readonly key: string
  readonly topics: readonly string[]
  readonly types: readonly string[]
  /** The last event id it has passed: events at or before it are not sent to it again. */
  position: string | undefined
  /** The current stream carries its topics from at or before its position. */
  covered: boolean
  /** It was told of a reset since its position was set, so a new epoch's first event needs no notice of its own. */
  toldReset: boolean
}

/** Subscription changes within this window become one reopen (a page subscribing to several, tabs announcing). */
const SETTLE_MS = 20

/**
 * The owner's side of sharing: every subscription of every page, and the one stream on the union of their topics.
 * Each event goes once to each subscription whose topics and types it matches, and never twice: a subscription
 * skips ids at or before its position, so a stream reopened from an older id (for a page that asked to replay
 * from there, or a new leader resuming from the pages' positions) sends nobody anything twice.
 */
export class Fanout {
  private readonly subscriptions = new Map<string, OwnedSubscription>()
  private readonly stream: EventStream
  /** The topics of the current stream, sorted. */
  private topics: string[] = []
  /** The last event id of the current stream. */
  private position: string | undefined
  private settleTimer: ReturnType<typeof setTimeout> | undefined

  constructor (private readonly options: FanoutOptions) {
    this.stream = new EventStream({
      ...options.config,
      token: options.token,
      onEvent: (event) => this.event(event),
      onReset: (notice) => this.reset(notice),
      onState: (state) => options.send({ kind: 'state', state })
    })
  }

  get state (): StreamState {
    return this.stream.state
  }

  /** Handles what a page says; `hello` and `token` belong to whoever carries the messages. */
  receive (message: TabMessage): void {
    if (message.kind === 'subscribe') this.subscribe(subscriptionKey(message.tab, message.sub), message.topics, message.types, message.after)
    else if (message.kind === 'unsubscribe') this.unsubscribe(subscriptionKey(message.tab, message.sub))
    else if (message.kind === 'bye') this.removeTab(message.tab)
  }

  subscribe (key: string, topics: readonly string[], types: readonly string[], after: string | undefined): void {
    this.subscriptions.delete(key)
    const subscription: OwnedSubscription = { key, topics, types, position: this.position, covered: false, toldReset: false }
    if (after !== undefined) {
      if (this.position === undefined || compareEventIds(after, this.position) !== undefined) {
        subscription.position = after
      } else {
        // An id of another epoch than the stream's: what it asks for is gone, as Herald would say itself.
        this.options.send({ kind: 'reset', subs: [key], notice: { reason: 'epoch-changed', topics: [...topics], lastEventId: after } })
        subscription.toldReset = true
      }
    }
    this.subscriptions.set(key, subscription)
    const carried = this.stream.active && topics.every((topic) => this.topics.includes(topic))
    const behind = subscription.position !== this.position && earlier(subscription.position, this.position) === subscription.position
    if (carried && !behind) {
      subscription.covered = true
      this.stream.listenTo(types)
      this.options.send({ kind: 'covered', subs: [key] })
    } else {
      this.settle()
    }
  }

  unsubscribe (key: string): void {
    if (this.subscriptions.delete(key)) this.settle()
  }

  removeTab (tab: string): void {
    let removed = false
    for (const key of this.subscriptions.keys()) {
      if (tabOf(key) === tab) removed = this.subscriptions.delete(key)
    }
    if (removed) this.settle()
  }

  close (): void {
    clearTimeout(this.settleTimer)
    this.subscriptions.clear()
    this.stream.close()
  }

  private settle (): void {
    clearTimeout(this.settleTimer)
    this.settleTimer = setTimeout(() => this.update(), SETTLE_MS)
  }

  /** Reopens the stream when its topics changed or a subscription asks to replay from before its position. */
  private update (): void {
    const topics = new Set<string>()
    const types = new Set<string>()
    for (const subscription of this.subscriptions.values()) {
      for (const topic of subscription.topics) topics.add(topic)
      for (const type of subscription.types) types.add(type)
    }
    if (topics.size === 0) {
      // Nobody listens: a later subscription starts afresh rather than from an old position.
      this.topics = []
      this.position = undefined
      if (this.stream.active) this.stream.close()
      return
    }
    let resumeFrom = this.position
    for (const subscription of this.subscriptions.values()) {
      if (!subscription.covered) resumeFrom = earlier(resumeFrom, subscription.position)
    }
    const sorted = [...topics].sort()
    const sameTopics = sorted.length === this.topics.length && sorted.every((topic, index) => topic === this.topics[index])
    const uncovered = [...this.subscriptions.values()].filter((subscription) => !subscription.covered)
    if (sameTopics && resumeFrom === this.position && this.stream.active) {
      this.stream.listenTo(types)
    } else {
      this.topics = sorted
      this.position = resumeFrom
      this.stream.open(sorted, types, resumeFrom)
    }
    for (const subscription of uncovered) subscription.covered = true
    if (uncovered.length > 0) this.options.send({ kind: 'covered', subs: uncovered.map((subscription) => subscription.key) })
  }

  private event (raw: RawEvent): void {
    const envelope = parseEnvelope(raw.data)
    if (envelope === undefined || raw.id === '') return
    const id = raw.id
    if (isNews(id, this.position)) this.position = id
    const event: HeraldEvent = { topic: envelope.topic, data: envelope.data, type: raw.type, id }
    const targets: string[] = []
    for (const subscription of this.subscriptions.values()) {
      if (!subscription.covered || !isNews(id, subscription.position)) continue
      const otherEpoch = subscription.position !== undefined && compareEventIds(id, subscription.position) === undefined
      if (otherEpoch && !subscription.toldReset) {
        this.options.send({ kind: 'reset', subs: [subscription.key], notice: { reason: 'epoch-changed', topics: [...subscription.topics], lastEventId: subscription.position as string } })
      }
      subscription.position = id
      subscription.toldReset = false
      if (subscription.topics.includes(event.topic) && subscription.types.includes(event.type)) targets.push(subscription.key)
    }
    if (targets.length > 0) this.options.send({ kind: 'event', subs: targets, event })
  }

  /**
   * A reset concerns every subscription on one of its topics that had not got past the position the stream asked
   * to resume from: one that had (the stream was reopened from further back for another subscription) was live
   * until the reopen, so the gap is not its own.
   */
  private reset (notice: ResetNotice): void {
    const targets: string[] = []
    for (const subscription of this.subscriptions.values()) {
      if (!subscription.covered || !subscription.topics.some((topic) => notice.topics.includes(topic))) continue
      const order = subscription.position === undefined ? undefined : compareEventIds(subscription.position, notice.lastEventId)
      if (order !== undefined && order > 0) continue
      subscription.toldReset = true
      targets.push(subscription.key)
    }
    if (targets.length > 0) this.options.send({ kind: 'reset', subs: targets, notice })
  }
}

function parseEnvelope (text: string): { topic: string, data: unknown } | undefined {
  try {
    const value: unknown = JSON.parse(text)
    if (typeof value !== 'object' || value === null || typeof (value as { topic?: unknown }).topic !== 'string') return undefined
    return value as { topic: string, data: unknown }
  } catch {
    return undefined
  }
}
