import { formatPosition } from '../protocol.js'
import { encodeFrame } from '../sse/encode.js'
import type { StoredEvent } from '../transport/transport.js'

/**
 * One event on one topic as streams send it, framed once and lazily, and shared by every stream of the topic: a
 * single-topic stream sends `frame` (its id is the topic's position); a multi-topic stream writes its own id line
 * before `body`; an enveloped stream (`envelope=1`) the same with the data wrapped as `{"topic","data"}`.
 */
export class TopicEvent {
  private framed: Buffer | undefined
  private bodyOnly: Buffer | undefined
  private envelopedFramed: Buffer | undefined
  private envelopedBodyOnly: Buffer | undefined

  constructor (readonly topic: string, readonly event: StoredEvent) {}

  get frame (): Buffer {
    return (this.framed ??= Buffer.from(encodeFrame({ id: formatPosition(this.event), event: this.event.type, retry: this.event.retry, data: this.event.data })))
  }

  get body (): Buffer {
    return (this.bodyOnly ??= Buffer.from(encodeFrame({ event: this.event.type, retry: this.event.retry, data: this.event.data })))
  }

  get envelopedFrame (): Buffer {
    return (this.envelopedFramed ??= Buffer.from(encodeFrame({ id: formatPosition(this.event), event: this.event.type, retry: this.event.retry, data: this.envelopedData() })))
  }

  get envelopedBody (): Buffer {
    return (this.envelopedBodyOnly ??= Buffer.from(encodeFrame({ event: this.event.type, retry: this.event.retry, data: this.envelopedData() })))
  }

  private envelopedData (): string {
    return `{"topic":${JSON.stringify(this.topic)},"data":${this.event.data}}`
  }
}
