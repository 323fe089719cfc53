import { Transform, type TransformCallback } from 'node:stream'
import type { StreamMessage } from '../broker/subscription.js'
import { encodeComment, encodeFrame, encodeRetry } from './encode.js'

const HEARTBEAT = Buffer.from(encodeComment())

/**
 * Turns a subscription's messages into the bytes of an SSE response. Events arrive already encoded
 * (once, shared by every subscriber); this stage only adds the opening lines, reset notices and heartbeats.
 */
export class SseEncoder extends Transform {
  constructor (retryMs: number) {
    super({ writableObjectMode: true, writableHighWaterMark: 16 })
    // Headers reach the client only with the first chunk: send one at once.
    this.push(encodeRetry(retryMs) + encodeComment('herald'))
  }

  override _transform (message: StreamMessage, _encoding: BufferEncoding, callback: TransformCallback): void {
    if ('frame' in message) callback(null, message.frame)
    else callback(null, encodeFrame({ event: 'herald.reset', data: JSON.stringify(message.reset) }))
  }

  /** Writes a heartbeat comment unless bytes are already waiting to go out (they keep the line alive). */
  heartbeat (): void {
    if (this.readableLength === 0 && !this.destroyed && !this.readableEnded) this.push(HEARTBEAT)
  }
}

/** One shared timer beats for every open stream; a timer per connection would cost a handle each. */
export class Heartbeat {
  private readonly streams = new Set<SseEncoder>()
  private readonly timer: NodeJS.Timeout

  constructor (intervalMs: number) {
    this.timer = setInterval(() => {
      for (const stream of this.streams) stream.heartbeat()
    }, intervalMs)
    this.timer.unref()
  }

  add (stream: SseEncoder): void {
    this.streams.add(stream)
  }

  delete (stream: SseEncoder): void {
    this.streams.delete(stream)
  }

  stop (): void {
    clearInterval(this.timer)
    this.streams.clear()
  }
}
