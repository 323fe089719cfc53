import type { Position, ResetNotice } from '../protocol.js'
import { RESET_EVENT } from '../protocol.js'
import { encodeComment, encodeFrame, encodeRetry } from '../sse/encode.js'
import type { BatchOutcome, PublishInput, PublishResult, StoredEvent, Transport, TransportHealth, TransportSink } from '../transport/transport.js'
import { NO_HUB_METRICS, type HubMetrics } from './hub-metrics.js'
import { ReplayBudget } from './replay-budget.js'
import { Session, type CatchUpSource, type EndReason } from './session.js'
import { TopicEvent } from './topic-event.js'

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
  /** Told once per live event and topic as it is handed to this instance's streams (for the publish→dispatch lag). */
  onDispatch?: (event: StoredEvent) => void
  /** Told of replays: started, finished, each read's wait for a slot. */
  metrics?: HubMetrics
}

export interface HubHealth extends TransportHealth {
  broker: 'memory' | 'redis'
}

interface TopicEntry {
  readonly sessions: Set<Session>
  /** Settles when the transport receives the topic's live events; a catch-up reads history only after it. */
  listening: Promise<void>
  listenFailed: boolean
}

/** How long to wait before retrying catch-ups that could not reach history. */
const CATCH_UP_RETRY_MS = 500
/** History reads one instance runs at once, by default. */
const REPLAY_READS = 4
const HEARTBEAT = Buffer.from(encodeComment())
/** A drain ends its due streams at most this often, however many there are. */
const DRAIN_TICK_MS = 10

/**
 * The one owner of delivery on an instance: the topics and the streams (sessions) that listen to them, fan-out, the
 * count of open streams, the heartbeat, and shutdown. Each stream's session owns its positions and its hand-over
 * from history to live; the transport only publishes, reads history, and starts and stops topics.
 *
 * A topic is listened to on its first stream and released after its last, so an instance holds one upstream
 * subscription per topic however many clients listen. Each live event is framed once per topic and the same bytes
 * go to every single-topic stream of it.
 */
export class Hub implements TransportSink {
  private readonly topics = new Map<string, TopicEntry>()
  private readonly sessions = new Set<Session>()
  private readonly heartbeatTimer: NodeJS.Timeout
  private retryTimer: NodeJS.Timeout | undefined
  private interruptedNow = false
  private closed = false
  private readonly replayBudget: ReplayBudget
  private readonly source: CatchUpSource
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
    const metrics = options.metrics ?? NO_HUB_METRICS
    this.replayBudget = new ReplayBudget(options.maxConcurrentReads ?? REPLAY_READS, (seconds) => metrics.replaySlotWaited(seconds))
    this.source = {
      metrics,
      listening: async (topic) => await this.listening(topic),
      heads: async (topics) => await this.transport.heads(topics),
      read: async (topic, after, limit, maxBytes) => await this.replayBudget.run(async () => await this.transport.read(topic, after, limit, maxBytes)),
      resetFrame: (notice) => this.resetFrame(notice),
      failed: (error) => {
        if (this.closed) return
        this.options.onCatchUpError?.(error)
        this.scheduleRetry()
      },
      succeeded: () => this.options.onCatchUpDone?.()
    }
    // One shared timer beats for every open stream; a timer per connection would cost a handle each.
    // It also resets stalled connections: no timer per connection for that either.
    const stallTimeoutMs = options.stallTimeoutMs
    this.heartbeatTimer = setInterval(() => {
      const now = Date.now()
      for (const session of this.sessions) {
        if (stallTimeoutMs !== undefined) session.checkStall(now, stallTimeoutMs)
        session.heartbeat(HEARTBEAT)
      }
    }, options.heartbeatMs)
    this.heartbeatTimer.unref()
  }

  async publish (input: PublishInput): Promise<PublishResult> {
    return await this.transport.publish(input)
  }

  /** Publishes events in order, as one round trip on Redis; each event's outcome is its own. */
  async publishBatch (inputs: readonly PublishInput[]): Promise<BatchOutcome[]> {
    return await this.transport.publishBatch(inputs)
  }

  /** Each topic's newest position. */
  async heads (topics: readonly string[]): Promise<Position[]> {
    return await this.transport.heads(topics)
  }

  /**
   * Opens a stream of topics: live events from now on, after the missed ones when `lastEventId` is given. With
   * `envelope`, each event's data is `{"topic":…,"data":…}`, naming the topic it is delivered for.
   */
  subscribe (topics: readonly string[], lastEventId?: string, { envelope = false }: { envelope?: boolean } = {}): Session {
    // Where a new client starts: the heads now, as it arrives, before its topics are listened to. Its catch-up
    // replays from there, so an event published between now and the SUBSCRIBE taking effect is not lost.
    const openingHeads = lastEventId === undefined ? this.transport.heads(topics) : undefined
    openingHeads?.catch(() => {})
    for (const topic of topics) {
      let entry = this.topics.get(topic)
      if (entry === undefined) {
        entry = { sessions: new Set(), listening: Promise.resolve(), listenFailed: false }
        this.topics.set(topic, entry)
        this.listen(topic, entry)
      }
    }
    const session = new Session(topics, {
      maxQueueBytes: this.options.maxQueueBytes,
      historyTtlMs: this.options.historyTtlMs,
      envelope,
      lastEventId,
      openingHeads,
      source: this.source,
      onDestroy: (destroyed) => this.remove(destroyed)
    })
    this.sessions.add(session)
    this.topicSubscriptions += topics.length
    for (const topic of topics) this.topics.get(topic)?.sessions.add(session)
    return session
  }

  /** Open streams on this instance. */
  get streamCount (): number {
    return this.sessions.size
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
    for (const session of this.sessions) events += session.events
    return events
  }

  /** Bytes handed to streams since the hub started, everything included. */
  get bytesSent (): number {
    let bytes = this.closedBytes
    for (const session of this.sessions) bytes += session.bytes
    return bytes
  }

  /** History reads running now and waiting for one of the instance's slots. */
  get replayLoad (): { running: number, waiting: number } {
    return this.replayBudget.load
  }

  /** True from `drain()` on: the caller refuses new streams (retryably) and reports itself not ready. */
  get draining (): boolean {
    return this.drainingNow || this.closed
  }

  /** Streams of a topic on this instance. */
  listenerCount (topic: string): number {
    return this.topics.get(topic)?.sessions.size ?? 0
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
    const streams = [...this.sessions]
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
    for (const session of [...this.sessions]) {
      session.finish('server-closing')
      setTimeout(() => session.close('server-closing'), flushMs).unref()
    }
    await this.transport.close()
  }

  // TransportSink

  deliver (topic: string, event: StoredEvent): void {
    const entry = this.topics.get(topic)
    if (entry === undefined) return
    this.options.onDispatch?.(event)
    // Framed once, lazily, and shared by every stream of the topic.
    const live = new TopicEvent(topic, event)
    for (const session of entry.sessions) session.deliver(live)
  }

  interrupted (topics?: readonly string[]): void {
    // Events may be published elsewhere while we cannot hear them: hold live delivery until a catch-up.
    if (topics === undefined) this.interruptedNow = true
    for (const session of this.sessionsOf(topics)) session.hold(topics)
  }

  restored (topics?: readonly string[]): void {
    if (topics === undefined) this.interruptedNow = false
    // Re-reads history for the streams of these topics, after live delivery may have missed events.
    for (const session of this.sessionsOf(topics)) session.resync(topics)
  }

  /** The streams of some topics, or all of them. */
  private sessionsOf (topics: readonly string[] | undefined): Iterable<Session> {
    if (topics === undefined) return [...this.sessions]
    const sessions = new Set<Session>()
    for (const topic of topics) for (const session of this.topics.get(topic)?.sessions ?? []) sessions.add(session)
    return sessions
  }

  private listen (topic: string, entry: TopicEntry): void {
    entry.listenFailed = false
    entry.listening = this.transport.listen(topic)
    // Catch-ups await it and retry a failure; this keeps a failure after everyone left from crashing.
    entry.listening.catch(() => { entry.listenFailed = true })
  }

  /** Settles once the topic's live events reach this instance; a listen that failed is tried again. */
  private async listening (topic: string): Promise<void> {
    const entry = this.topics.get(topic)
    if (entry === undefined) return
    if (entry.listenFailed) this.listen(topic, entry)
    await entry.listening
  }

  private remove (session: Session): void {
    if (!this.sessions.delete(session)) return
    this.topicSubscriptions -= session.topics.length
    this.closedEvents += session.events
    this.closedBytes += session.bytes
    const reason = session.endReason ?? 'client-closed'
    this.streamsEnded.set(reason, (this.streamsEnded.get(reason) ?? 0) + 1)
    for (const topic of session.topics) {
      const entry = this.topics.get(topic)
      if (entry === undefined || !entry.sessions.delete(session) || entry.sessions.size > 0) continue
      this.topics.delete(topic)
      this.transport.unlisten(topic)
    }
  }

  /** The in-band notice that comes before a replay whose start could not be honoured; counted by reason. */
  private resetFrame (notice: ResetNotice): Buffer {
    this.resetsSent.set(notice.reason, (this.resetsSent.get(notice.reason) ?? 0) + 1)
    return Buffer.from(encodeFrame({ event: RESET_EVENT, data: JSON.stringify(notice) }))
  }

  /** Retries, after a pause, the catch-ups that failed; after an interruption, `restored` does it instead. */
  private scheduleRetry (): void {
    if (this.retryTimer !== undefined) return
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      if (this.closed || this.interruptedNow) return
      for (const session of this.sessions) {
        if (session.needsCatchUp) session.retryCatchUp()
      }
    }, CATCH_UP_RETRY_MS)
    this.retryTimer.unref()
  }
}
