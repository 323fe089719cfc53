import { Readable, type Writable } from 'node:stream'
import { encodeStreamId, parseStreamId, topicTag, type Position, type ResetNotice, type ResetReason } from '../protocol.js'
import type { TopicRead } from '../transport/transport.js'
import type { HubMetrics, ReplayKind, ReplayResult } from './hub-metrics.js'
import { planTopic, type TopicStart } from './replay.js'
import { TopicEvent } from './topic-event.js'

/** Why a stream ended, for the log line written when it closes. */
export type EndReason = 'client-closed' | 'server-closing' | 'draining' | 'token-expired' | 'slow-client' | 'stalled' | 'failed'

export class SlowConsumerError extends Error {
  constructor (readonly queuedBytes: number, readonly limit: number) {
    super(`client fell ${queuedBytes} bytes behind (limit ${limit}); connection ended, it can resume from history`)
    this.name = 'SlowConsumerError'
  }
}

/** The connection's socket took no byte for `stalledMs` while bytes waited for it (a client that stopped reading). */
export class StalledClientError extends Error {
  constructor (readonly stalledMs: number, readonly queuedBytes: number) {
    super(`client took no byte for ${stalledMs} ms with ${queuedBytes} bytes waiting; connection reset, it can resume from history`)
    this.name = 'StalledClientError'
  }
}

/** What a session needs from its hub to catch up: history, within the instance's budget, and the topics' heads. */
export interface CatchUpSource {
  /** Settles once the topic's live events reach this instance: a history read must come after it. */
  listening: (topic: string) => Promise<void>
  heads: (topics: readonly string[]) => Promise<Position[]>
  read: (topic: string, after: Position, limit: number, maxBytes: number) => Promise<TopicRead>
  /** The `herald.reset` frame of a notice (the hub counts them). */
  resetFrame: (notice: ResetNotice) => Buffer
  /** A catch-up could not reach history: the session stays held and the hub retries it (`retryCatchUp`). */
  failed: (error: unknown) => void
  succeeded: () => void
  /** Told of each catch-up: started, and finished with its result and duration. */
  metrics: Pick<HubMetrics, 'replayStarted' | 'replayFinished'>
}

export interface SessionOptions {
  maxQueueBytes: number
  /** Events older than this are not replayed (0 = no limit). */
  historyTtlMs: number
  /** Frames name their topic (`envelope=1`). */
  envelope?: boolean
  /** The client's Last-Event-ID; without one, the stream starts at `openingHeads`. */
  lastEventId?: string | undefined
  /** Each topic's head as the client arrived, read before its topics were listened to. */
  openingHeads?: Promise<Position[]> | undefined
  source: CatchUpSource
  /** Called once when the session is destroyed, to release its listeners. */
  onDestroy: (session: Session) => void
}

/** One topic of a stream: the stream's position on it, and its live events held during a catch-up. */
interface TopicState extends Position {
  readonly topic: string
  held: TopicEvent[] | undefined
}

interface FirstStarts {
  starts: Map<string, TopicStart>
  resets: Map<ResetReason, string[]>
}

/** Events one history read returns at most, spread over the stream's topics (at least MIN_PAGE_PER_TOPIC each). */
const PAGE_EVENTS = 100
const MIN_PAGE_PER_TOPIC = 10
/**
 * Data one history page holds at most, spread over the stream's topics (the queue cap if that is less): what a
 * replay keeps in memory while its client drains it, whatever the events' size, bounded as the live queue is.
 */
const PAGE_BYTES = 1024 * 1024
/** A replay waits until fewer bytes than this (or a quarter of the queue cap) wait for the client. */
const REPLAY_LOW_WATER_BYTES = 64 * 1024

/**
 * One client's stream: a byte-mode Readable of ready SSE frames, each event at most once, in order on each topic.
 *
 * It privately owns its position on each topic, the live events held while a topic catches up from history, and
 * the hand-over: a topic's live events are held while its history is replayed, then released above the replay's
 * last position, so the hand-over has no gap and no duplicate. The hub only hands it live events and asks it to
 * catch up (after an interruption); everything else happens here.
 *
 * Frames are shared Buffers, encoded once per event and topic. Once connected to a socket, a frame goes straight to
 * it when nothing is queued and the socket does not need draining; otherwise it waits in the Readable's buffer,
 * which `pipe()` drains into the same socket under backpressure, so order holds. Everything the client has not
 * taken yet counts against the byte cap: the Readable's buffer, the socket's unsent bytes, and held live events.
 * Past the cap the session destroys itself with SlowConsumerError, so one slow client costs bounded memory.
 */
export class Session extends Readable {
  readonly topics: readonly string[]
  readonly envelope: boolean
  readonly openedAt = Date.now()
  /** Events and bytes handed to the connection. */
  events = 0
  bytes = 0
  endReason: EndReason | undefined

  private readonly states: TopicState[]
  private readonly byTopic = new Map<string, TopicState>()
  /** The one topic of a single-topic stream: its frames are shared whole, ids included. */
  private readonly single: TopicState | undefined
  private readonly tags: string[]
  private readonly source: CatchUpSource
  private readonly maxQueueBytes: number
  private readonly historyTtlMs: number
  private readonly onDestroy: (session: Session) => void
  /** Where each topic's first catch-up starts, and the resets the client's id calls for; undefined once used. */
  private firstStarts: Promise<FirstStarts> | undefined
  private readonly lastEventId: string | undefined
  /** Topics waiting for a catch-up, and whether one runs. */
  private readonly pending = new Set<string>()
  private catchingUp = false
  private heldBytes = 0
  /** Stall detection: when the socket last took bytes (or had none waiting), and how many it had taken then. */
  private progressAt = this.openedAt
  private takenAtCheck = 0
  /** The connection's socket (HTTP/1.1) or stream (HTTP/2). */
  private socket: Writable | undefined
  private finishing = false

  constructor (topics: readonly string[], options: SessionOptions) {
    super()
    this.topics = topics
    this.envelope = options.envelope ?? false
    this.maxQueueBytes = options.maxQueueBytes
    this.historyTtlMs = options.historyTtlMs
    this.source = options.source
    this.onDestroy = options.onDestroy
    this.lastEventId = options.lastEventId
    this.states = topics.map((topic) => ({ topic, epoch: '', seq: 0, held: [] }))
    for (const state of this.states) this.byTopic.set(state.topic, state)
    this.single = this.states.length === 1 ? this.states[0] : undefined
    this.tags = topics.map(topicTag)
    this.firstStarts = this.workOutStarts(options.lastEventId, options.openingHeads)
    this.firstStarts.catch(() => {})
    this.resync()
  }

  /** The stream's id now: its position on each of its topics. */
  get lastId (): string {
    return encodeStreamId(this.tags, this.states)
  }

  /** True while live events of some topic are held back for a catch-up. */
  get holding (): boolean {
    return this.states.some((state) => state.held !== undefined)
  }

  /** Bytes the client has not taken yet. */
  get queuedBytes (): number {
    return this.readableLength + this.heldBytes + (this.socket?.writableLength ?? 0)
  }

  /** True once the stream is ending or ended: nothing more will be sent. */
  get closing (): boolean {
    return this.destroyed || this.finishing
  }

  /** Bytes sent towards the client that it has not taken yet (held live events not counted). */
  get pendingBytes (): number {
    return this.readableLength + (this.socket?.writableLength ?? 0)
  }

  /** Starts the stream on a connection: the opening bytes, then every frame, piped under backpressure. */
  connect (socket: Writable, opening: Buffer): void {
    this.socket = socket
    this.push(opening)
    this.pipe(socket)
  }

  /** A live event on one of the stream's topics. */
  deliver (live: TopicEvent): void {
    const state = this.single ?? this.byTopic.get(live.topic)
    if (state === undefined) return
    const event = live.event
    if (state.held !== undefined) {
      if (this.closing) return
      state.held.push(live)
      this.heldBytes += event.data.length
      this.checkCap()
    } else if (event.epoch === state.epoch) {
      if (event.seq <= state.seq) return
      state.seq = event.seq
      this.sendEvent(state, live)
    } else if (state.epoch === '' && event.seq === 1) {
      // The first event of the topic's first epoch the stream sees: nothing before it can have been missed.
      state.epoch = event.epoch
      state.seq = 1
      this.sendEvent(state, live)
    } else {
      // Never compared with a position of another epoch: held, and history tells what the new epoch holds.
      state.held = [live]
      this.heldBytes += event.data.length
      this.resync([state.topic])
    }
  }

  /** Holds the live events of these topics (all when undefined) until they have caught up. */
  hold (topics: readonly string[] = this.topics): void {
    for (const topic of topics) {
      const state = this.byTopic.get(topic)
      if (state !== undefined) state.held ??= []
    }
  }

  /** Catches these topics (all when undefined) up from history, holding their live events meanwhile. */
  resync (topics: readonly string[] = this.topics): void {
    for (const topic of topics) {
      if (!this.byTopic.has(topic)) continue
      this.hold([topic])
      this.pending.add(topic)
    }
    this.runCatchUp()
  }

  /** Retries the catch-ups that failed; the hub calls it after a pause. */
  retryCatchUp (): void {
    this.runCatchUp()
  }

  /** True when topics wait for a catch-up that is not running (one failed). */
  get needsCatchUp (): boolean {
    return this.pending.size > 0 && !this.catchingUp
  }

  /** Writes a keep-alive comment unless bytes are already on their way (they keep the line alive). */
  heartbeat (comment: Buffer): void {
    if (this.queuedBytes === 0) this.send(comment, false)
  }

  /**
   * Resets the connection (StalledClientError) when its socket has taken no byte for `stallMs` while bytes
   * wait in it; called from the hub's shared heartbeat loop, so it is noticed within one heartbeat after.
   * A client that reads, however slowly, makes progress and stays (the byte cap bounds what it may leave).
   */
  checkStall (now: number, stallMs: number): void {
    const socket = this.socket
    if (socket === undefined || this.destroyed) return
    const waiting = socket.writableLength
    // Bytes handed over minus those still waiting here or in the socket: what the kernel (or, over HTTP/2, the
    // peer's flow-control window) took. It grows while the client reads, even when the socket refills between
    // two checks.
    const taken = this.bytes - this.readableLength - waiting
    if (waiting === 0 || taken !== this.takenAtCheck) {
      this.progressAt = now
      this.takenAtCheck = taken
      return
    }
    if (now - this.progressAt < stallMs) return
    this.endReason ??= 'stalled'
    this.destroy(new StalledClientError(now - this.progressAt, this.queuedBytes))
  }

  /**
   * Ends the stream after what is already queued, and `last` (such as a `retry:`) if given; held live events are
   * dropped (history keeps them).
   */
  finish (reason: EndReason, last?: Buffer): void {
    if (this.destroyed || this.finishing) return
    if (last !== undefined) this.send(last, false)
    if (this.destroyed) return
    this.endReason ??= reason
    this.finishing = true
    this.dropHeld()
    this.push(null)
  }

  /** Ends the stream and its connection at once, for a reason, whatever is still queued. */
  close (reason: EndReason): void {
    this.endReason ??= reason
    this.socket?.destroy()
    this.destroy()
  }

  /** Resolves once fewer than `bytes` are pending, or the stream is ending: a replay's backpressure. */
  async drained (bytes: number): Promise<void> {
    while (this.pendingBytes >= bytes && !this.closing) {
      await new Promise<void>((resolve) => {
        const socket = this.socket
        const done = (): void => {
          this.off('data', done)
          this.off('close', done)
          socket?.off('drain', done)
          resolve()
        }
        // Bytes leave the Readable as 'data' (into the socket) and the socket as 'drain'.
        this.on('data', done)
        this.on('close', done)
        socket?.on('drain', done)
      })
    }
  }

  override _read (): void {
    // Frames are pushed as they come; pipe() pulls from the buffer under backpressure.
  }

  override _destroy (error: Error | null, callback: (error?: Error | null) => void): void {
    this.endReason ??= error === null ? 'client-closed' : 'failed'
    this.dropHeld()
    this.onDestroy(this)
    callback(error)
  }

  /** Runs the pending catch-ups, one at a time; topics asked for meanwhile run right after. */
  private runCatchUp (): void {
    if (this.catchingUp || this.pending.size === 0 || this.closing) return
    this.catchingUp = true
    const topics = this.topics.filter((topic) => this.pending.has(topic))
    for (const topic of topics) this.pending.delete(topic)
    // A stream's first catch-up resumes the client's id, or replays what came since a new client arrived; later ones
    // resync after an interruption or a new epoch.
    const kind: ReplayKind = this.firstStarts === undefined ? 'resync' : this.lastEventId === undefined ? 'new' : 'resume'
    this.source.metrics.replayStarted(kind)
    const startedAt = performance.now()
    const finished = (result: ReplayResult): void => this.source.metrics.replayFinished(kind, this.closing ? 'client-left' : result, (performance.now() - startedAt) / 1000)
    this.catchUp(topics).then(() => {
      finished('done')
      this.catchingUp = false
      this.source.succeeded()
      this.runCatchUp()
    }, (error: unknown) => {
      finished('failed')
      this.catchingUp = false
      // Still held: tried again when the hub retries.
      for (const topic of topics) if (this.byTopic.get(topic)?.held !== undefined) this.pending.add(topic)
      if (!this.closing) this.source.failed(error)
    })
  }

  /**
   * Brings topics up to date from history while their live events are held, then releases them: every topic's
   * first page at once, the resets before any event, then topic after topic, page after page under backpressure.
   */
  private async catchUp (topics: string[]): Promise<void> {
    await Promise.all(topics.map(async (topic) => await this.source.listening(topic)))
    if (this.closing) return
    const first = this.firstStarts === undefined ? undefined : await this.firstStarts
    if (this.closing) return
    const lastEventId = first !== undefined && this.lastEventId !== undefined ? this.lastEventId : this.lastId
    const limit = Math.max(MIN_PAGE_PER_TOPIC, Math.ceil(PAGE_EVENTS / this.topics.length))
    const maxBytes = Math.max(1, Math.floor(Math.min(PAGE_BYTES, this.maxQueueBytes) / this.topics.length))
    const lowWater = Math.max(1, Math.min(REPLAY_LOW_WATER_BYTES, Math.floor(this.maxQueueBytes / 4)))

    const starts = topics.map((topic): TopicStart => {
      const state = this.byTopic.get(topic) as TopicState
      return first?.starts.get(topic) ?? { epoch: state.epoch, seq: state.seq, live: true }
    })
    const reads = await Promise.all(topics.map(async (topic, index) => {
      const start = starts[index] as TopicStart
      return await this.source.read(topic, { epoch: start.epoch ?? '', seq: start.seq }, limit, maxBytes)
    }))
    if (this.closing) return
    const now = Date.now()
    const plans = reads.map((read, index) => planTopic(starts[index] as TopicStart, read, now, this.historyTtlMs))
    // A position that cannot be honoured resets, then continues from where the client arrived: read again from there.
    await Promise.all(plans.map(async (plan, index) => {
      const arrival = (starts[index] as TopicStart).arrival
      if (arrival === undefined || (plan.reset !== 'epoch-changed' && plan.reset !== 'unknown-id')) return
      const start: TopicStart = { ...arrival, live: true }
      const again = planTopic(start, await this.source.read(topics[index] as string, arrival, limit, maxBytes), Date.now(), this.historyTtlMs)
      plans[index] = { ...again, reset: plan.reset }
    }))
    if (this.closing) return
    // The notices go first, before any event they concern: one per reason.
    const resets = new Map(first?.resets ?? [])
    first?.resets.clear()
    for (const [index, plan] of plans.entries()) {
      if (plan.reset !== undefined) resets.set(plan.reset, [...(resets.get(plan.reset) ?? []), topics[index] as string])
    }
    for (const [reason, named] of resets) this.send(this.source.resetFrame({ reason, topics: named, lastEventId }), false)

    for (const [index, topic] of topics.entries()) {
      const state = this.byTopic.get(topic) as TopicState
      let plan = plans[index]
      // From here on the topic resumes from its own position, should this catch-up fail part-way.
      if (first !== undefined) {
        first.starts.delete(topic)
        if (first.starts.size === 0) this.firstStarts = undefined
      }
      while (plan !== undefined) {
        state.epoch = plan.epoch
        state.seq = plan.after
        for (const event of plan.events) {
          if (event.seq <= state.seq) continue
          state.seq = event.seq
          this.sendEvent(state, new TopicEvent(topic, event))
          if (this.pendingBytes >= lowWater) await this.drained(lowWater)
          if (this.closing) return
        }
        if (plan.done) {
          this.release(state, plan.epoch, plan.seq)
          break
        }
        if (this.pendingBytes >= lowWater) await this.drained(lowWater)
        if (this.closing) return
        const start: TopicStart = { epoch: plan.epoch, seq: plan.seq, live: true }
        const read = await this.source.read(topic, start as Position, limit, maxBytes)
        if (this.closing) return
        plan = planTopic(start, read, Date.now(), this.historyTtlMs)
        if (plan.reset !== undefined) this.send(this.source.resetFrame({ reason: plan.reset, topics: [topic], lastEventId: this.lastId }), false)
      }
    }
  }

  /** Ends a topic's catch-up at a position, then delivers its held live events above it. */
  private release (state: TopicState, epoch: string, seq: number): void {
    if (epoch !== state.epoch) {
      state.epoch = epoch
      state.seq = 0
    }
    if (seq > state.seq) state.seq = seq
    // Asked to catch up again meanwhile (a new epoch, a shard back): it stays held, or live events would move its
    // position while the next catch-up reads from the one it had, and that catch-up would send them again.
    if (this.pending.has(state.topic)) return
    const held = state.held ?? []
    state.held = undefined
    let otherEpoch = false
    for (const live of held) {
      this.heldBytes -= live.event.data.length
      if (live.event.epoch === epoch) this.deliver(live)
      else otherEpoch = true
    }
    // Held events of another epoch: older than the read, or newer (a new epoch began after it): read again.
    if (otherEpoch && !this.closing) this.resync([state.topic])
  }

  /**
   * Where each topic's first catch-up starts, from the client's Last-Event-ID (or the heads as it arrived), and the
   * resets that id already calls for.
   */
  private async workOutStarts (lastEventId: string | undefined, openingHeads: Promise<Position[]> | undefined): Promise<FirstStarts> {
    const starts = new Map<string, TopicStart>()
    const resets = new Map<ResetReason, string[]>()
    // Each topic's head as the client arrived: a new client starts there, and so does a topic whose position cannot
    // be honoured (after its reset), so nothing published since the client arrived is skipped.
    const heads = await (openingHeads ?? this.source.heads(this.topics))
    const arrival = new Map(this.topics.map((topic, index) => [topic, heads[index] ?? { epoch: '', seq: 0 }]))
    const fromHead = (topic: string): TopicStart => ({ ...(arrival.get(topic) as Position), live: true })
    const positioned = (topic: string, position: Position): TopicStart => ({ ...position, live: false, arrival: arrival.get(topic) as Position })
    const request = lastEventId === undefined ? undefined : parseStreamId(lastEventId, this.topics)
    for (const topic of this.topics) starts.set(topic, fromHead(topic))
    switch (request?.kind) {
      case undefined:
        // A new client asked for nothing older than its arrival: replay only what came since.
        break
      case 'start':
        for (const topic of this.topics) starts.set(topic, { epoch: undefined, seq: 0, live: false })
        break
      case 'positions':
        // Topics the id does not name were not in the client's last stream: they start at the head.
        for (const [topic, position] of request.positions) {
          starts.set(topic, position === null ? { epoch: '', seq: 0, live: true } : positioned(topic, position))
        }
        if (request.ambiguous.length > 0) resets.set('unknown-id', request.ambiguous)
        break
      case 'bare': {
        // A single-topic id on a multi-topic stream: it is the position of the topic whose epoch it names.
        const named = this.topics.filter((topic) => arrival.get(topic)?.epoch === request.position.epoch)
        for (const topic of named) starts.set(topic, positioned(topic, request.position))
        if (named.length === 0) resets.set('epoch-changed', [...this.topics])
        break
      }
      case 'legacy':
      case 'malformed':
        resets.set(request.kind === 'legacy' ? 'epoch-changed' : 'malformed-id', [...this.topics])
    }
    return { starts, resets }
  }

  /** Sends an event for a topic whose position was just set to it, unless the stream shows it for another topic. */
  private sendEvent (state: TopicState, live: TopicEvent): void {
    if (this.single !== undefined) {
      this.send(this.envelope ? live.envelopedFrame : live.frame, true)
      return
    }
    // An event on several of the stream's topics is shown once, for the first of them in publish order. Its other
    // copies only move the id, with an id-only block (no data, so no event: EventSource and the spec just take the
    // id), so a client that reconnects with other topics still knows where it is on each.
    const topics = live.event.topics
    if (topics !== undefined) {
      const shownFor = topics.find((topic) => this.byTopic.has(topic))
      if (shownFor !== state.topic) {
        this.send(Buffer.from(`id: ${this.lastId}\n\n`), false)
        return
      }
    }
    const id = Buffer.from(`id: ${this.lastId}\n`)
    this.send(Buffer.concat([id, this.envelope ? live.envelopedBody : live.body]), true)
  }

  private send (bytes: Buffer, isEvent: boolean): void {
    if (this.finishing || this.destroyed) return
    this.bytes += bytes.length
    if (isEvent) this.events++
    const socket = this.socket
    if (socket !== undefined && this.readableLength === 0 && this.readableFlowing === true && !socket.writableNeedDrain && socket.writable) {
      socket.write(bytes)
      // Taken by the kernel at once, the common case: nothing is queued, so there is no cap to check.
      if (socket.writableLength === 0) return
    } else {
      this.push(bytes)
    }
    this.checkCap()
  }

  private dropHeld (): void {
    for (const state of this.states) state.held = undefined
    this.heldBytes = 0
  }

  private checkCap (): void {
    const queued = this.queuedBytes
    if (queued > this.maxQueueBytes) {
      this.endReason ??= 'slow-client'
      this.destroy(new SlowConsumerError(queued, this.maxQueueBytes))
    }
  }
}
