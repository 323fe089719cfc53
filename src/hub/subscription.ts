import { Readable, type Writable } from 'node:stream'
import type { Head } from '../transport/transport.js'

/** An event on the delivery path: its id, and its SSE frame, encoded once and shared by every subscriber. */
export interface FramedEvent {
  /** The sequence number within its epoch. */
  readonly id: number
  readonly epoch: string
  readonly frame: Buffer
}

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

export interface SubscriptionOptions {
  maxQueueBytes: number
  /** Frames name their topic (`envelope=1`): the hub hands this subscription the enveloped frames. */
  envelope?: boolean
  /** Called once when the subscription is destroyed, to release its listeners. */
  onDestroy: (subscription: Subscription) => void
  /**
   * Called when a live event of another epoch arrives: the id counter was lost and made anew. Live events are
   * held from then on; the hub catches up (a reset, then the new epoch's events) and releases them.
   */
  onOtherEpoch: (subscription: Subscription) => void
}

/**
 * One client's stream: a byte-mode Readable of ready SSE frames, in id order, each event at most once.
 *
 * Frames are shared Buffers, encoded once per event by the hub. Once connected to a socket, a frame goes
 * straight to it when nothing is queued and the socket does not need draining; otherwise it waits in the
 * Readable's buffer, which `pipe()` drains into the same socket under backpressure, so order holds.
 * Everything the client has not taken yet counts against the byte cap: the Readable's buffer, the
 * socket's unsent bytes, and live events held back during a catch-up. Past the cap the subscription
 * destroys itself with SlowConsumerError, so one slow client costs bounded memory.
 *
 * The hub drives the hand-over: while it replays history, live events are held, then released above the
 * replay's last id, so the hand-over has no gap and no duplicate.
 */
export class Subscription extends Readable {
  readonly topics: readonly string[]
  readonly envelope: boolean
  readonly openedAt = Date.now()
  /** The epoch of `position` ('' before the first catch-up, or while no epoch exists). */
  epoch = ''
  /** The highest id delivered (or skipped as already seen); live events at or below it are dropped. */
  position = 0
  /** Events and bytes handed to the connection. */
  events = 0
  bytes = 0
  endReason: EndReason | undefined

  /** The hub's catch-up bookkeeping: the client's Last-Event-ID until the first catch-up honoured it. */
  lastEventId: string | undefined
  /** A new client's starting point, read as it arrived; its first catch-up replays from there. */
  openingHead: Promise<Head> | undefined
  started = false
  catchingUp = false
  catchUpAgain = false

  /** Stall detection: when the socket last took bytes (or had none waiting), and how many it had taken then. */
  private progressAt = this.openedAt
  private takenAtCheck = 0
  private held: FramedEvent[] | undefined = []
  private heldBytes = 0
  /** The connection's socket (HTTP/1.1) or stream (HTTP/2). */
  private socket: Writable | undefined
  private finishing = false
  private readonly maxQueueBytes: number
  private readonly onDestroy: (subscription: Subscription) => void
  private readonly onOtherEpoch: (subscription: Subscription) => void

  constructor (topics: readonly string[], options: SubscriptionOptions) {
    super()
    this.topics = topics
    this.envelope = options.envelope ?? false
    this.maxQueueBytes = options.maxQueueBytes
    this.onDestroy = options.onDestroy
    this.onOtherEpoch = options.onOtherEpoch
  }

  /** True while live events are held back for a catch-up. */
  get holding (): boolean {
    return this.held !== undefined
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

  /** Starts the stream on a connection: the opening bytes, then every frame, piped under backpressure. */
  connect (socket: Writable, opening: Buffer): void {
    this.socket = socket
    this.push(opening)
    this.pipe(socket)
  }

  /** A live event. */
  deliver (event: FramedEvent): void {
    if (this.held !== undefined) {
      if (this.destroyed || this.finishing) return
      this.held.push(event)
      this.heldBytes += event.frame.length
      this.checkCap()
    } else if (event.epoch !== this.epoch) {
      // Never compared with a position of another epoch: held, and the hub finds out what the new epoch holds.
      this.hold()
      this.deliver(event)
      this.onOtherEpoch(this)
    } else if (event.id > this.position) {
      this.position = event.id
      this.send(event.frame, true)
    }
  }

  /** Holds live events until the next `release`. */
  hold (): void {
    this.held ??= []
  }

  /**
   * Sends a catch-up (a reset notice first, then events of `epoch`), then releases held live events above it.
   * Held events of another epoch are dropped: the catch-up found `epoch` current, so they are older, or newer
   * than the read; for the second case the hub is told (onOtherEpoch) and catches up again.
   */
  release (epoch: string, position: number, events: Iterable<FramedEvent>, reset?: Buffer): void {
    if (this.destroyed) return
    this.replay(epoch, events, reset)
    if (position > this.position) this.position = position
    const held = this.held ?? []
    this.held = undefined
    this.heldBytes = 0
    let otherEpoch = false
    for (const event of held) {
      if (event.epoch === epoch) this.deliver(event)
      else otherEpoch = true
    }
    if (otherEpoch && !this.destroyed && !this.finishing) {
      this.hold()
      this.onOtherEpoch(this)
    }
  }

  /** Sends part of a catch-up (a reset notice first, then events of `epoch`) while live events stay held. */
  replay (epoch: string, events: Iterable<FramedEvent>, reset?: Buffer): void {
    if (this.destroyed) return
    if (reset !== undefined) this.send(reset, false)
    if (epoch !== this.epoch) {
      this.epoch = epoch
      this.position = 0
    }
    for (const event of events) {
      if (event.id <= this.position) continue
      this.position = event.id
      this.send(event.frame, true)
    }
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
    this.held = undefined
    this.heldBytes = 0
    this.push(null)
  }

  /** Ends the stream and its connection at once, for a reason, whatever is still queued. */
  close (reason: EndReason): void {
    this.endReason ??= reason
    this.socket?.destroy()
    this.destroy()
  }

  override _read (): void {
    // Frames are pushed as they come; pipe() pulls from the buffer under backpressure.
  }

  override _destroy (error: Error | null, callback: (error?: Error | null) => void): void {
    this.endReason ??= error === null ? 'client-closed' : 'failed'
    this.held = undefined
    this.heldBytes = 0
    this.onDestroy(this)
    callback(error)
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

  private checkCap (): void {
    const queued = this.queuedBytes
    if (queued > this.maxQueueBytes) {
      this.endReason ??= 'slow-client'
      this.destroy(new SlowConsumerError(queued, this.maxQueueBytes))
    }
  }
}
