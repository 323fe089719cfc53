import { encodeComment, encodeFrame, encodeRetry } from '../sse/encode.js'
import { eventId, type PublishInput, type PublishResult, type StoredEvent, type Transport, type TransportHealth, type TransportSink } from '../transport/transport.js'
import { NO_HUB_METRICS, type HubMetrics, type ReplayKind, type ReplayResult } from './hub-metrics.js'
import { ReplayBudget } from './replay-budget.js'
import { parseEventId, planReplay, type ReplayStart, type ResetNotice } from './replay.js'
import { Subscription, type EndReason, type FramedEvent } from './subscription.js'

export interface HubOptions {
  /** Bytes one connection may leave unread before it is ended. */
  maxQueueBytes: number
  /** Events older than this are not replayed (0 = no limit). */
  historyTtlMs: number
  /** Milliseconds between keep-alive comments on idle streams. */
  heartbeatMs: number
  /** History reads (replay pages) this instance runs at once; default 4. */
  maxConcurrentReads?: number
  /** A connection whose socket took nothing for this long while bytes waited is reset (checked each heartbeat). */
  stallTimeoutMs?: number
  /** Told when a catch-up could not reach history; it is retried. */
  onCatchUpError?: (error: unknown) => void
  /** Told when a catch-up succeeded, so a caller can log an outage's end once. */
  onCatchUpDone?: () => void
  /** Told once per live event as it is handed to this instance's streams (for the publish→dispatch lag). */
  onDispatch?: (event: StoredEvent) => void
  /** Told of replays: started, finished, each read's wait for a slot. */
  metrics?: HubMetrics
}

export interface HubHealth extends TransportHealth {
  broker: 'memory' | 'redis'
}

interface TopicEntry {
  readonly subscriptions: Set<Subscription>
  /** Settles when the transport receives the topic's live events; a catch-up reads history only after it. */
  listening: Promise<void>
  listenFailed: boolean
}

/** How long to wait before retrying catch-ups that could not reach history. */
const CATCH_UP_RETRY_MS = 500
/** Events one history read returns at most, spread over the stream's topics (at least MIN_PAGE_PER_TOPIC each). */
const PAGE_EVENTS = 100
const MIN_PAGE_PER_TOPIC = 10
/**
 * Data one history page holds at most, spread over the stream's topics (the queue cap if that is less): what a
 * replay keeps in memory while its client drains it, whatever the events' size, bounded as the live queue is.
 * 100 events of 60 KB made 6 MB per replaying client; a quarter of this made replays of big events 2× slower
 * (a read per few events), for little memory saved (`npm run findings -- 1`).
 */
const PAGE_BYTES = 1024 * 1024
/** A replay waits until fewer bytes than this (or a quarter of the queue cap) wait for the client. */
const REPLAY_LOW_WATER_BYTES = 64 * 1024
/** History reads one instance runs at once, by default. */
const REPLAY_READS = 4
const HEARTBEAT = Buffer.from(encodeComment())
/** A drain ends its due streams at most this often, however many there are. */
const DRAIN_TICK_MS = 10

/**
 * The one owner of delivery on an instance: the subscriptions and the topics they listen to, the hand-over
 * from history to live, the resync after the transport was interrupted, the count of open streams, the
 * heartbeat, and shutdown. The transport only publishes, reads history, and starts and stops topics.
 *
 * A topic is listened to on its first subscription and released after its last, so an instance holds one
 * upstream subscription per topic however many clients listen. Each live event is framed once and the same
 * bytes go to every subscription.
 */
export class Hub implements TransportSink {
  private readonly topics = new Map<string, TopicEntry>()
  private readonly subscriptions = new Set<Subscription>()
  private readonly heartbeatTimer: NodeJS.Timeout
  private retryTimer: NodeJS.Timeout | undefined
  private interruptedNow = false
  private closed = false
  private lastEvent: StoredEvent | undefined
  private lastFramed: FramedEvent | undefined
  private readonly replayBudget: ReplayBudget
  private readonly metrics: HubMetrics
  private drainingNow = false
  private drainTimer: NodeJS.Timeout | undefined
  /** Subscriptions to topics: each stream counts once per topic. */
  private topicSubscriptions = 0
  /** Events and bytes sent by streams that have closed; open ones keep their own count. */
  private closedEvents = 0
  private closedBytes = 0
  /** Streams ended, by why; read by metrics. */
  readonly streamsEnded = new Map<EndReason, number>()
  /** `herald.reset` notices sent, by reason; read by metrics. */
  readonly resetsSent = new Map<string, number>()

  constructor (readonly transport: Transport, private readonly options: HubOptions) {
    transport.bind(this)
    this.metrics = options.metrics ?? NO_HUB_METRICS
    this.replayBudget = new ReplayBudget(options.maxConcurrentReads ?? REPLAY_READS, (seconds) => this.metrics.replaySlotWaited(seconds))
    // One shared timer beats for every open stream; a timer per connection would cost a handle each.
    // It also resets stalled connections: no timer per connection for that either.
    const stallTimeoutMs = options.stallTimeoutMs
    this.heartbeatTimer = setInterval(() => {
      const now = Date.now()
      for (const subscription of this.subscriptions) {
        if (stallTimeoutMs !== undefined) subscription.checkStall(now, stallTimeoutMs)
        subscription.heartbeat(HEARTBEAT)
      }
    }, options.heartbeatMs)
    this.heartbeatTimer.unref()
  }

  async publish (input: PublishInput): Promise<PublishResult> {
    return await this.transport.publish(input)
  }

  /**
   * Opens a subscription: live events from now on, after the missed ones when `lastEventId` is given. With
   * `envelope`, each event's data is `{"topic":…,"data":…}`, naming the topic it is delivered for.
   */
  subscribe (topics: readonly string[], lastEventId?: string, { envelope = false }: { envelope?: boolean } = {}): Subscription {
    const subscription = new Subscription(topics, {
      maxQueueBytes: this.options.maxQueueBytes,
      envelope,
      onDestroy: (destroyed) => this.remove(destroyed),
      onOtherEpoch: (held) => this.catchUp(held)
    })
    subscription.lastEventId = lastEventId
    if (lastEventId === undefined) {
      // Where a new client starts: the head now, as it arrives, before its topics are listened to. Its catch-up
      // replays from here, so an event published between now and the SUBSCRIBE taking effect is not lost.
      subscription.openingHead = this.transport.head()
      subscription.openingHead.catch(() => {})
    }
    this.subscriptions.add(subscription)
    this.topicSubscriptions += topics.length
    for (const topic of topics) {
      let entry = this.topics.get(topic)
      if (entry === undefined) {
        entry = { subscriptions: new Set(), listening: Promise.resolve(), listenFailed: false }
        this.topics.set(topic, entry)
        this.listen(topic, entry)
      }
      entry.subscriptions.add(subscription)
    }
    this.catchUp(subscription)
    return subscription
  }

  /** Open streams on this instance. */
  get streamCount (): number {
    return this.subscriptions.size
  }

  /** Topics this instance listens to. */
  get topicCount (): number {
    return this.topics.size
  }

  /** Subscriptions to topics on this instance: a stream of three topics counts three. */
  get subscriptionCount (): number {
    return this.topicSubscriptions
  }

  /** Events handed to streams since the hub started (replayed and live; notices and heartbeats not counted). */
  get eventsSent (): number {
    let events = this.closedEvents
    for (const subscription of this.subscriptions) events += subscription.events
    return events
  }

  /** Bytes handed to streams since the hub started, everything included. */
  get bytesSent (): number {
    let bytes = this.closedBytes
    for (const subscription of this.subscriptions) bytes += subscription.bytes
    return bytes
  }

  /** True from `drain()` on: the caller refuses new streams (retryably) and reports itself not ready. */
  get draining (): boolean {
    return this.drainingNow || this.closed
  }

  /** Subscriptions to a topic on this instance. */
  listenerCount (topic: string): number {
    return this.topics.get(topic)?.subscriptions.size ?? 0
  }

  health (): HubHealth {
    return { broker: this.transport.kind, ...this.transport.health() }
  }

  /**
   * Ends every open stream, spread evenly over `spreadMs`, each with a `retry:` of about `retryMs` (jittered by
   * ±50%) so its client comes back soon, elsewhere, and not with everyone else in the same moment. Resolves
   * when the last was told to end. Publishing keeps working; refusing new streams meanwhile is the caller's
   * (see `draining`).
   */
  async drain (spreadMs: number, retryMs: number): Promise<void> {
    if (this.draining) return
    this.drainingNow = true
    const streams = [...this.subscriptions]
    const startedAt = Date.now()
    let ended = 0
    await new Promise<void>((resolve) => {
      const endDue = (): void => {
        this.drainTimer = undefined
        // The streams whose share of the window has come; one timer for all, at most every DRAIN_TICK_MS.
        const due = spreadMs === 0 ? streams.length : Math.min(streams.length, Math.floor((Date.now() - startedAt) * streams.length / spreadMs) + 1)
        for (; ended < due; ended++) {
          const retry = Buffer.from(encodeRetry(Math.round(retryMs * (0.5 + Math.random()))))
          streams[ended]?.finish('draining', retry)
        }
        if (ended >= streams.length || this.closed) return resolve()
        this.drainTimer = setTimeout(endDue, Math.max(DRAIN_TICK_MS, spreadMs / streams.length))
      }
      endDue()
    })
  }

  /** Ends every stream after what it has queued, and stops; a stream that cannot flush in time is cut. */
  async close (flushMs = 1_000): Promise<void> {
    if (this.closed) return
    this.closed = true
    clearInterval(this.heartbeatTimer)
    clearTimeout(this.retryTimer)
    clearTimeout(this.drainTimer)
    for (const subscription of [...this.subscriptions]) {
      subscription.finish('server-closing')
      setTimeout(() => subscription.close('server-closing'), flushMs).unref()
    }
    await this.transport.close()
  }

  // TransportSink

  deliver (topic: string, event: StoredEvent): void {
    const entry = this.topics.get(topic)
    if (entry === undefined) return
    // An event on several topics comes once per topic as the same object: frame it once.
    let framed = this.lastFramed
    if (event !== this.lastEvent || framed === undefined) {
      framed = { id: event.id, epoch: event.epoch, frame: frameOf(event) }
      this.lastEvent = event
      this.lastFramed = framed
      this.options.onDispatch?.(event)
    }
    // An enveloped frame names the topic: framed once per event and topic, when a stream asked for it. An event
    // on several of a stream's topics comes first for the first of them in publish order (transports deliver in
    // that order); the stream takes that one and drops the others by id.
    let enveloped: FramedEvent | undefined
    for (const subscription of entry.subscriptions) {
      if (!subscription.envelope) subscription.deliver(framed)
      else subscription.deliver(enveloped ??= { id: event.id, epoch: event.epoch, frame: envelopedFrameOf(topic, event) })
    }
  }

  interrupted (): void {
    // Events may be published elsewhere while we cannot hear them: hold live delivery until a catch-up.
    this.interruptedNow = true
    for (const subscription of this.subscriptions) subscription.hold()
  }

  restored (): void {
    this.interruptedNow = false
    this.resync()
  }

  /** Re-reads history for every open subscription, after live delivery may have missed events. */
  private resync (): void {
    for (const subscription of this.subscriptions) {
      subscription.hold()
      this.catchUp(subscription)
    }
  }

  private listen (topic: string, entry: TopicEntry): void {
    entry.listenFailed = false
    entry.listening = this.transport.listen(topic)
    // Catch-ups await it and retry a failure; this keeps a failure after everyone left from crashing.
    entry.listening.catch(() => { entry.listenFailed = true })
  }

  private remove (subscription: Subscription): void {
    if (!this.subscriptions.delete(subscription)) return
    this.topicSubscriptions -= subscription.topics.length
    this.closedEvents += subscription.events
    this.closedBytes += subscription.bytes
    const reason = subscription.endReason ?? 'client-closed'
    this.streamsEnded.set(reason, (this.streamsEnded.get(reason) ?? 0) + 1)
    for (const topic of subscription.topics) {
      const entry = this.topics.get(topic)
      if (entry === undefined || !entry.subscriptions.delete(subscription) || entry.subscriptions.size > 0) continue
      this.topics.delete(topic)
      this.transport.unlisten(topic)
    }
  }

  /**
   * Brings a subscription up to date from history while its live events are held, then releases them.
   * Runs once at a time per subscription; a resync asked for meanwhile runs right after.
   */
  private catchUp (subscription: Subscription): void {
    if (subscription.catchingUp) {
      subscription.catchUpAgain = true
      return
    }
    subscription.catchingUp = true
    this.runCatchUp(subscription).then(() => {
      subscription.catchingUp = false
      this.options.onCatchUpDone?.()
      if (subscription.catchUpAgain && !subscription.destroyed) {
        subscription.catchUpAgain = false
        this.catchUp(subscription)
      }
    }, (error: unknown) => {
      subscription.catchingUp = false
      subscription.catchUpAgain = false
      if (this.closed) return
      this.options.onCatchUpError?.(error)
      this.scheduleRetry()
    })
  }

  private async runCatchUp (subscription: Subscription): Promise<void> {
    // Listen before reading history: whatever is published after the read then arrives live.
    const listening: Array<Promise<void>> = []
    for (const topic of subscription.topics) {
      const entry = this.topics.get(topic)
      if (entry === undefined) continue
      if (entry.listenFailed) this.listen(topic, entry)
      listening.push(entry.listening)
    }
    await Promise.all(listening)
    if (subscription.destroyed) return

    let start: ReplayStart
    if (!subscription.started && subscription.lastEventId === undefined) {
      // A new client without an id asked for nothing older than its arrival: replay only what came since.
      const opening = subscription.openingHead ?? this.transport.head()
      subscription.openingHead = undefined
      const head = await opening
      if (subscription.destroyed) return
      start = { lastEventId: eventId(head.epoch, head.seq), epoch: head.epoch, after: head.seq, live: true }
    } else if (subscription.started) {
      // A catch-up after an interruption or a new epoch: from the stream's own position.
      const lastEventId = eventId(subscription.epoch, subscription.position)
      start = { lastEventId, epoch: subscription.epoch, after: subscription.position, live: true }
    } else {
      const lastEventId = subscription.lastEventId ?? '0'
      const point = parseEventId(lastEventId)
      if (point === undefined || point.kind === 'legacy') {
        const head = await this.transport.head()
        if (subscription.destroyed) return
        const reset = this.resetFrame({ reason: point === undefined ? 'malformed-id' : 'epoch-changed', topics: [...subscription.topics], lastEventId })
        subscription.release(head.epoch, head.seq, [], reset)
        subscription.started = true
        return
      }
      start = point.kind === 'start'
        ? { lastEventId, epoch: undefined, after: 0, live: false }
        : { lastEventId, epoch: point.epoch, after: point.seq, live: false }
    }
    // Page after page, each read within the instance's budget, each page sent under the client's backpressure.
    const topics = subscription.topics
    const limit = Math.max(MIN_PAGE_PER_TOPIC, Math.ceil(PAGE_EVENTS / topics.length))
    const maxBytes = Math.max(1, Math.floor(Math.min(PAGE_BYTES, this.options.maxQueueBytes) / topics.length))
    const lowWater = Math.max(1, Math.min(REPLAY_LOW_WATER_BYTES, Math.floor(this.options.maxQueueBytes / 4)))
    const kind: ReplayKind = subscription.started ? 'resync' : start.live ? 'new' : 'resume'
    this.metrics.replayStarted(kind)
    const startedAt = performance.now()
    let result: ReplayResult = 'failed'
    try {
      for (let page = 0; ; page++) {
        if (subscription.pendingBytes >= lowWater) await subscription.drained(lowWater)
        if (subscription.closing) return
        let read = await this.replayBudget.run(async () => await this.transport.read(topics, start.after, limit, maxBytes))
        // A live stream whose epoch was replaced gets the new epoch from its start.
        if (start.live && read.epoch !== start.epoch && start.after > 0) {
          read = await this.replayBudget.run(async () => await this.transport.read(topics, 0, limit, maxBytes))
        }
        if (subscription.closing) return
        // Whether a topic expired before the client's position is asked once; later pages start from our own.
        if (page > 0) for (const history of read.topics) history.forgotten = false
        const plan = planReplay(start, read, Date.now(), this.options.historyTtlMs)
        // The notice goes first, before any event it concerns.
        if (plan.reset !== undefined) subscription.replay(plan.epoch, [], this.resetFrame(plan.reset))
        for (const [index, event] of plan.events.entries()) {
          const frame = subscription.envelope ? envelopedFrameOf(plan.topics[index] as string, event) : frameOf(event)
          subscription.replay(plan.epoch, [{ id: event.id, epoch: event.epoch, frame }])
          if (subscription.pendingBytes >= lowWater) await subscription.drained(lowWater)
          if (subscription.closing) return
        }
        if (plan.done) {
          subscription.release(plan.epoch, plan.position, [])
          subscription.started = true
          result = 'done'
          return
        }
        start = { lastEventId: eventId(plan.epoch, plan.position), epoch: plan.epoch, after: plan.position, live: true }
      }
    } finally {
      if (result !== 'done' && subscription.closing) result = 'client-left'
      this.metrics.replayFinished(kind, result, (performance.now() - startedAt) / 1000)
    }
  }

  /** The in-band notice that comes before a replay whose start could not be honoured; counted by reason. */
  private resetFrame (notice: ResetNotice): Buffer {
    this.resetsSent.set(notice.reason, (this.resetsSent.get(notice.reason) ?? 0) + 1)
    return Buffer.from(encodeFrame({ event: 'herald.reset', data: JSON.stringify(notice) }))
  }

  /** Retries, after a pause, the catch-ups that failed; after an interruption, `restored` does it instead. */
  private scheduleRetry (): void {
    if (this.retryTimer !== undefined) return
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      if (this.closed || this.interruptedNow) return
      for (const subscription of this.subscriptions) {
        if (subscription.holding && !subscription.catchingUp) this.catchUp(subscription)
      }
    }, CATCH_UP_RETRY_MS)
    this.retryTimer.unref()
  }
}

/** The SSE frame of a stored event. */
function frameOf (event: StoredEvent): Buffer {
  return Buffer.from(encodeFrame({ id: eventId(event.epoch, event.id), event: event.type, retry: event.retry, data: event.data }))
}

/** The SSE frame of a stored event for a stream with envelopes: the published JSON wrapped with the topic. */
function envelopedFrameOf (topic: string, event: StoredEvent): Buffer {
  const data = `{"topic":${JSON.stringify(topic)},"data":${event.data}}`
  return Buffer.from(encodeFrame({ id: eventId(event.epoch, event.id), event: event.type, retry: event.retry, data }))
}
