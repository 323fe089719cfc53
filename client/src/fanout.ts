import { ArrivalOrder } from './arrival-order.js'
import { EventStream, type RawEvent } from './event-stream.js'
import { subscriptionKey, tabOf, type OwnerMessage, type StreamConfig, type TabMessage } from './protocol.js'
import type { HeraldEvent, ResetNotice, StreamState } from './types.js'
import type { Envelope } from './wire.js'

export interface FanoutOptions {
  config: StreamConfig
  token: () => Promise<string | undefined>
  /** Where messages for pages go; `event`, `reset` and `covered` name their subscriptions by key. */
  send: (message: OwnerMessage) => void
  /**
   * The order in which ids were received; a leader shares its page's, which knows every id any page got, so that a
   * new leader knows where each page is.
   */
  order?: ArrivalOrder
}

interface OwnedSubscription {
  readonly key: string
  readonly topics: readonly string[]
  readonly types: readonly string[]
  /** The last event id it has passed: events at or before it are not sent to it again. */
  position: string | undefined
  /** The current stream carries its topics from at or before its position. */
  covered: boolean
}

/** Subscription changes within this window become one reopen (a page subscribing to several, tabs announcing). */
const SETTLE_MS = 20

/**
 * The owner's side of sharing: every subscription of every page, and the one stream on the union of their topics.
 * Each event goes once to each subscription whose topics and types it matches, and never twice: ids are opaque,
 * ordered as they arrived (ArrivalOrder), and a subscription skips ids at or before its position, so a stream
 * reopened from an older id (for a page that asked to replay from there, or a new leader resuming from the pages'
 * positions) sends nobody anything twice, nor anything from before where it started.
 */
export class Fanout {
  private readonly subscriptions = new Map<string, OwnedSubscription>()
  private readonly stream: EventStream
  /** The topics of the current stream, sorted. */
  private topics: string[] = []
  /** The last event id of the current stream. */
  private position: string | undefined
  /** The topic of the event at `position`. */
  private positionTopic: string | undefined
  private settleTimer: ReturnType<typeof setTimeout> | undefined
  private readonly order: ArrivalOrder

  constructor (private readonly options: FanoutOptions) {
    this.order = options.order ?? new ArrivalOrder()
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
    const subscription: OwnedSubscription = { key, topics, types, position: after ?? this.position, covered: false }
    this.subscriptions.set(key, subscription)
    const carried = this.stream.active && topics.every((topic) => this.topics.includes(topic))
    // An id the stream is not at is further back, or one this owner never saw (of another epoch, perhaps): the
    // stream reopens from it, and Herald replays what follows it or says that it cannot.
    const behind = after !== undefined && after !== this.position
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
      this.positionTopic = undefined
      this.order.endCatchUp()
      if (this.stream.active) this.stream.close()
      return
    }
    let resumeFrom = this.position
    for (const subscription of this.subscriptions.values()) {
      if (!subscription.covered) resumeFrom = this.order.earlier(resumeFrom, subscription.position)
    }
    const sorted = [...topics].sort()
    const sameTopics = sorted.length === this.topics.length && sorted.every((topic, index) => topic === this.topics[index])
    const uncovered = [...this.subscriptions.values()].filter((subscription) => !subscription.covered)
    if (sameTopics && resumeFrom === this.position && this.stream.active) {
      this.stream.listenTo(types)
    } else {
      // Replayed ids this owner never saw, before the stream's last one, are older than it: not news to readers there.
      const stillCarried = this.positionTopic !== undefined && topics.has(this.positionTopic)
      if (resumeFrom !== this.position && this.position !== undefined && stillCarried) this.order.beginCatchUp(resumeFrom, this.position)
      else this.order.endCatchUp()
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
    const rank = this.order.record(id)
    if (this.order.isNews(rank, this.position)) {
      this.position = id
      this.positionTopic = envelope.topic
    }
    const event: HeraldEvent = { topic: envelope.topic, data: envelope.data, type: raw.type, id }
    const targets: string[] = []
    for (const subscription of this.subscriptions.values()) {
      if (!subscription.covered || !this.order.isNews(rank, subscription.position)) continue
      subscription.position = id
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
    this.order.endCatchUp()
    const from = this.order.rank(notice.lastEventId)
    const targets: string[] = []
    for (const subscription of this.subscriptions.values()) {
      if (!subscription.covered || !subscription.topics.some((topic) => notice.topics.includes(topic))) continue
      const at = this.order.rank(subscription.position)
      const pastIt = subscription.position !== notice.lastEventId && at !== undefined && (from === undefined || at > from)
      if (pastIt) continue
      targets.push(subscription.key)
    }
    if (targets.length > 0) this.options.send({ kind: 'reset', subs: targets, notice })
  }
}

function parseEnvelope (text: string): Envelope | undefined {
  try {
    const value: unknown = JSON.parse(text)
    if (typeof value !== 'object' || value === null || typeof (value as { topic?: unknown }).topic !== 'string') return undefined
    return value as Envelope
  } catch {
    return undefined
  }
}
