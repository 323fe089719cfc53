import { Readable } from 'node:stream'
import type { HeraldEvent } from './event.js'
import type { ResetNotice } from './replay.js'

/** What a subscription yields: events, and reset notices that come before a replay. */
export type StreamMessage = HeraldEvent | { reset: ResetNotice }

export class SlowConsumerError extends Error {
  constructor (readonly queuedBytes: number, readonly limit: number) {
    super(`client fell ${queuedBytes} bytes behind (limit ${limit}); connection ended, it can resume from history`)
    this.name = 'SlowConsumerError'
  }
}

export interface SubscriptionOptions {
  maxQueueBytes: number
  /** Called once when the subscription is destroyed, to release its listeners. */
  onDestroy: (subscription: Subscription) => void
}

/** Node's own buffer holds only this many messages; the rest wait in our byte-counted queue. */
const READABLE_HIGH_WATER_MARK = 16

/**
 * One client's view of its topics: an object-mode Readable of events in id order, each at most once.
 *
 * While the broker replays history, live events are held back, then released above the replay's last id,
 * so the hand-over has no gap and no duplicate. The bytes waiting for a slow reader are counted; past the
 * cap the subscription destroys itself with SlowConsumerError, so one slow client costs bounded memory.
 */
export class Subscription extends Readable {
  readonly topics: readonly string[]
  /** The highest id delivered (or skipped as already seen); live events at or below it are dropped. */
  position = 0
  private held: HeraldEvent[] | undefined = []
  private readonly queue: StreamMessage[] = []
  private queuedBytes = 0
  private readonly maxQueueBytes: number
  private readonly onDestroy: (subscription: Subscription) => void
  private wantsMore = false
  private finishing = false
  private endPushed = false

  constructor (topics: readonly string[], options: SubscriptionOptions) {
    super({ objectMode: true, highWaterMark: READABLE_HIGH_WATER_MARK })
    this.topics = topics
    this.maxQueueBytes = options.maxQueueBytes
    this.onDestroy = options.onDestroy
  }

  /** True while live events are held back for a replay. */
  get holding (): boolean {
    return this.held !== undefined
  }

  /** A live event from the broker. */
  deliver (event: HeraldEvent): void {
    if (this.destroyed) return
    if (this.held !== undefined) {
      this.held.push(event)
      this.account(event.frame.length)
    } else if (event.id > this.position) {
      this.position = event.id
      this.enqueue(event, event.frame.length)
    }
  }

  /** Starts holding live events again, before a catch-up from history. */
  hold (): void {
    this.held ??= []
  }

  /** Sends a replay (reset notice first, then events), then releases held live events above it. */
  release (position: number, events: Iterable<HeraldEvent>, reset?: ResetNotice): void {
    if (this.destroyed) return
    if (reset !== undefined) this.enqueue({ reset }, 0)
    for (const event of events) {
      if (event.id <= this.position) continue
      this.position = event.id
      this.enqueue(event, event.frame.length)
    }
    if (position > this.position) this.position = position
    const held = this.held ?? []
    this.held = undefined
    for (const event of held) {
      this.queuedBytes -= event.frame.length
      this.deliver(event)
    }
  }

  /** Ends the stream after what is already queued; held live events are dropped (history keeps them). */
  finish (): void {
    if (this.destroyed || this.finishing) return
    this.finishing = true
    this.held = undefined
    this.flush()
  }

  override _read (): void {
    this.wantsMore = true
    this.flush()
  }

  override _destroy (error: Error | null, callback: (error?: Error | null) => void): void {
    this.queue.length = 0
    this.held = undefined
    this.queuedBytes = 0
    this.onDestroy(this)
    callback(error)
  }

  private enqueue (message: StreamMessage, bytes: number): void {
    if (this.finishing) return
    this.queue.push(message)
    this.account(bytes)
    if (this.wantsMore) this.flush()
  }

  private account (bytes: number): void {
    this.queuedBytes += bytes
    if (this.queuedBytes > this.maxQueueBytes) this.destroy(new SlowConsumerError(this.queuedBytes, this.maxQueueBytes))
  }

  private flush (): void {
    while (this.wantsMore && this.queue.length > 0) {
      const message = this.queue.shift() as StreamMessage
      if ('frame' in message) this.queuedBytes -= message.frame.length
      this.wantsMore = this.push(message)
    }
    if (this.finishing && this.queue.length === 0 && !this.endPushed) {
      this.endPushed = true
      this.push(null)
    }
  }
}
