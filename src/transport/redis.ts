import type { Redis } from 'ioredis'
import { BrokerUnavailableError } from '../errors.js'
import { publishFailure } from './redis-errors.js'
import { PUBLISH_SCRIPT, READ_SCRIPT } from './redis-scripts.js'
import type { Head, HistoryRead, PublishInput, PublishResult, StoredEvent, TopicHistory, Transport, TransportHealth, TransportSink } from './transport.js'

export interface RedisTransportOptions {
  prefix: string
  historySize: number
  /** How long a topic's history is kept after its last event: every key Herald writes expires. */
  historyRetentionMs: number
  idempotencyTtlMs: number
  /** Told about failures the transport recovers from by itself (a re-subscribe that failed is retried). */
  onRecoverableError?: (error: unknown) => void
  /** Told how long each script call took (ms), failed ones included, for metrics. */
  onCommand?: (command: 'publish' | 'read', milliseconds: number) => void
}

interface HeraldCommands {
  heraldPublish (...args: Array<string | number>): Promise<[string, number]>
  heraldRead (...args: Array<string | number>): Promise<unknown[]>
}

type StreamEntry = [string, string[]]

/** How long to wait before retrying a re-subscribe that failed. */
const RESUBSCRIBE_RETRY_MS = 500

/**
 * The Redis transport: events go through one Lua script on the publisher connection and come back through
 * ONE subscriber connection per process, subscribed to a topic's channel while the hub listens to it.
 * When the subscriber connection drops it says `interrupted`; when it is back AND subscribed again to every
 * channel (by our own SUBSCRIBE, not ioredis's: that one is still in flight when ioredis reports ready), it
 * says `restored`.
 */
export class RedisTransport implements Transport {
  readonly kind = 'redis'
  private readonly publisher: Redis & HeraldCommands
  private readonly channelPrefix: string
  private readonly channels = new Set<string>()
  private sink: TransportSink | undefined
  private interrupted = false
  private closed = false
  private retryTimer: NodeJS.Timeout | undefined
  private lastReceived: StoredEvent | undefined

  constructor (publisher: Redis, private readonly subscriber: Redis, private readonly options: RedisTransportOptions) {
    publisher.defineCommand('heraldPublish', { lua: PUBLISH_SCRIPT })
    publisher.defineCommand('heraldRead', { lua: READ_SCRIPT })
    this.publisher = publisher as Redis & HeraldCommands
    this.channelPrefix = `${options.prefix}topic:`
  }

  bind (sink: TransportSink): void {
    this.sink = sink
    this.subscriber.on('message', this.onMessage)
    this.subscriber.on('close', this.onClose)
    this.subscriber.on('ready', this.onReady)
  }

  async publish (input: PublishInput): Promise<PublishResult> {
    const prefix = this.options.prefix
    const keys = [`${prefix}seq`, `${prefix}epoch`, `${prefix}marks`, `${prefix}idem:${input.idempotencyKey ?? ''}`]
    for (const topic of input.topics) keys.push(`${prefix}history:${topic}`)
    const args: Array<string | number> = [
      this.channelPrefix,
      this.options.historySize,
      this.options.historyRetentionMs,
      input.idempotencyKey === undefined ? 0 : this.options.idempotencyTtlMs,
      input.type ?? '',
      input.retry ?? '',
      input.data
    ]
    for (const topic of input.topics) args.push(topic)
    let reply: [string, number]
    const started = performance.now()
    try {
      reply = await this.publisher.heraldPublish(keys.length, ...keys, ...args)
    } catch (error) {
      throw publishFailure(error)
    } finally {
      this.options.onCommand?.('publish', performance.now() - started)
    }
    return { id: String(reply[0]), topics: input.topics, duplicate: reply[1] === 1 }
  }

  async head (): Promise<Head> {
    const prefix = this.options.prefix
    try {
      const [epoch, seq] = await this.publisher.mget(`${prefix}epoch`, `${prefix}seq`)
      return { epoch: epoch ?? '', seq: epoch === null ? 0 : Number(seq ?? 0) }
    } catch (error) {
      throw new BrokerUnavailableError('Redis is unreachable', { cause: error })
    }
  }

  async read (topics: readonly string[], afterId: number, limit: number, maxBytes: number): Promise<HistoryRead> {
    const prefix = this.options.prefix
    const keys = [`${prefix}seq`, `${prefix}epoch`, `${prefix}marks`, ...topics.map((topic) => `${prefix}history:${topic}`)]
    let reply: unknown[]
    const started = performance.now()
    try {
      reply = await this.publisher.heraldRead(keys.length, ...keys, afterId + 1, this.options.historyRetentionMs, limit, Number.isFinite(maxBytes) ? maxBytes : Number.MAX_SAFE_INTEGER)
    } catch (error) {
      throw new BrokerUnavailableError('Redis is unreachable', { cause: error })
    } finally {
      this.options.onCommand?.('read', performance.now() - started)
    }
    const epoch = reply[0] as string
    const histories: TopicHistory[] = topics.map((topic, index) => ({
      topic,
      trimmedThrough: parseInt(reply[2 + index * 4] as string, 10),
      events: (reply[3 + index * 4] as StreamEntry[]).map((entry) => parseEntry(epoch, entry)),
      forgotten: reply[4 + index * 4] === 1,
      full: reply[5 + index * 4] === 1
    }))
    return { epoch, head: epoch === '' ? 0 : Number(reply[1]), topics: histories }
  }

  async listen (topic: string): Promise<void> {
    const channel = this.channelPrefix + topic
    this.channels.add(channel)
    await this.subscriber.subscribe(channel)
  }

  unlisten (topic: string): void {
    const channel = this.channelPrefix + topic
    this.channels.delete(channel)
    this.subscriber.unsubscribe(channel).catch(() => {})
  }

  health (): TransportHealth {
    const publisher = this.publisher.status
    const subscriber = this.subscriber.status
    const whole = publisher === 'ready' && subscriber === 'ready' && !this.interrupted
    return { status: whole ? 'ok' : 'degraded', redis: { publisher, subscriber } }
  }

  async close (): Promise<void> {
    this.closed = true
    clearTimeout(this.retryTimer)
    this.subscriber.off('message', this.onMessage)
    this.subscriber.off('close', this.onClose)
    this.subscriber.off('ready', this.onReady)
    this.sink = undefined
  }

  private readonly onMessage = (channel: string, message: string): void => {
    if (this.sink === undefined || !channel.startsWith(this.channelPrefix)) return
    const topic = channel.slice(this.channelPrefix.length)
    // An event published to several topics arrives once per channel, back to back: decode it once.
    const idEnd = message.indexOf('\n')
    const dash = message.lastIndexOf('-', idEnd)
    const epoch = message.slice(0, dash)
    const id = Number(message.slice(dash + 1, idEnd))
    let event = this.lastReceived
    if (event === undefined || event.id !== id || event.epoch !== epoch) {
      event = parseMessage(epoch, id, message, idEnd)
      this.lastReceived = event
    }
    this.sink.deliver(topic, event)
  }

  private readonly onClose = (): void => {
    if (this.closed || this.interrupted) return
    this.interrupted = true
    this.sink?.interrupted()
  }

  private readonly onReady = (): void => {
    if (this.closed || !this.interrupted) return
    this.resubscribe()
  }

  /** Subscribes again to every channel, then says `restored`; retried until it succeeds or the link drops again. */
  private resubscribe (): void {
    clearTimeout(this.retryTimer)
    this.retryTimer = undefined
    const channels = [...this.channels]
    const subscribed = channels.length > 0 ? this.subscriber.subscribe(...channels) : Promise.resolve()
    subscribed.then(() => {
      if (this.closed || this.subscriber.status !== 'ready') return
      this.interrupted = false
      this.sink?.restored()
    }, (error: unknown) => {
      this.options.onRecoverableError?.(error)
      if (this.closed) return
      this.retryTimer = setTimeout(() => { if (this.subscriber.status === 'ready') this.resubscribe() }, RESUBSCRIBE_RETRY_MS)
      this.retryTimer.unref()
    })
  }
}

function parseMessage (epoch: string, id: number, message: string, idEnd: number): StoredEvent {
  const typeEnd = message.indexOf('\n', idEnd + 1)
  const retryEnd = message.indexOf('\n', typeEnd + 1)
  const timeEnd = message.indexOf('\n', retryEnd + 1)
  const event: StoredEvent = { id, epoch, data: message.slice(timeEnd + 1), time: Number(message.slice(retryEnd + 1, timeEnd)) }
  const type = message.slice(idEnd + 1, typeEnd)
  const retry = message.slice(typeEnd + 1, retryEnd)
  if (type !== '') event.type = type
  if (retry !== '') event.retry = Number(retry)
  return event
}

function parseEntry (epoch: string, [streamId, fields]: StreamEntry): StoredEvent {
  const values: Record<string, string> = {}
  for (let index = 0; index < fields.length; index += 2) values[fields[index] as string] = fields[index + 1] as string
  const event: StoredEvent = { id: parseInt(streamId, 10), epoch, data: values.d ?? '', time: Number(values.ms ?? 0) }
  if (values.t !== undefined && values.t !== '') event.type = values.t
  if (values.r !== undefined && values.r !== '') event.retry = Number(values.r)
  return event
}
