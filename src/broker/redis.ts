import type { Redis } from 'ioredis'
import { toHeraldEvent, type HeraldEvent } from './event.js'
import { Fanout } from './fanout.js'
import { PUBLISH_SCRIPT, READ_SCRIPT } from './redis-scripts.js'
import type { HistoryRead, TopicHistory } from './replay.js'
import type { Subscription } from './subscription.js'
import { BrokerUnavailableError, type Broker, type BrokerHealth, type PublishInput, type PublishResult, type StoredEvent, type SubscribeOptions } from './types.js'

export interface RedisBrokerOptions {
  prefix: string
  historySize: number
  historyTtlMs: number
  idempotencyTtlMs: number
  maxQueueBytes: number
  /** Told about failures the broker recovers from by itself (history reads during an outage). */
  onRecoverableError?: (error: unknown) => void
}

interface HeraldCommands {
  heraldPublish (...args: Array<string | number>): Promise<[string, number]>
  heraldRead (...args: Array<string | number>): Promise<unknown[]>
}

type StreamEntry = [string, string[]]

/** How long to wait before retrying a catch-up that could not reach Redis. */
const RESYNC_RETRY_MS = 500

/**
 * The Redis broker: events go through one Lua script on the publisher connection, and come back through
 * ONE subscriber connection per process, subscribed to a topic's channel while it has local listeners.
 * When either connection drops, open subscriptions hold live events and catch up from history on return.
 */
export class RedisBroker implements Broker {
  readonly kind = 'redis'
  private readonly fanout: Fanout
  private readonly publisher: Redis & HeraldCommands
  private readonly channelPrefix: string
  private resyncTimer: NodeJS.Timeout | undefined
  private interrupted = false
  private lastReceived: HeraldEvent | undefined
  private closed = false

  constructor (publisher: Redis, private readonly subscriber: Redis, private readonly options: RedisBrokerOptions) {
    publisher.defineCommand('heraldPublish', { lua: PUBLISH_SCRIPT })
    publisher.defineCommand('heraldRead', { lua: READ_SCRIPT })
    this.publisher = publisher as Redis & HeraldCommands
    this.channelPrefix = `${options.prefix}topic:`
    this.fanout = new Fanout(
      { head: async () => this.head(), read: async (topics, afterId) => this.read(topics, afterId) },
      {
        activate: async (topic) => { await this.subscriber.subscribe(this.channelPrefix + topic) },
        deactivate: (topic) => { this.subscriber.unsubscribe(this.channelPrefix + topic).catch(() => {}) }
      },
      {
        maxQueueBytes: options.maxQueueBytes,
        historyTtlMs: options.historyTtlMs,
        onCatchUpError: (error) => {
          options.onRecoverableError?.(error)
          this.scheduleResync()
        }
      }
    )
    subscriber.on('message', this.onMessage)
    subscriber.on('close', this.onInterrupted)
    subscriber.on('ready', this.onSubscriberReady)
    publisher.on('ready', this.onPublisherReady)
  }

  async publish (input: PublishInput): Promise<PublishResult> {
    const prefix = this.options.prefix
    const keys = [`${prefix}seq`, `${prefix}idem:${input.idempotencyKey ?? ''}`, ...input.topics.map((topic) => `${prefix}history:${topic}`)]
    const args = [
      this.channelPrefix,
      this.options.historySize,
      input.idempotencyKey === undefined ? 0 : this.options.idempotencyTtlMs,
      input.type ?? '',
      input.retry ?? '',
      input.data,
      ...input.topics
    ]
    let reply: [string, number]
    try {
      reply = await this.publisher.heraldPublish(keys.length, ...keys, ...args)
    } catch (error) {
      throw new BrokerUnavailableError('Redis is unreachable; the event was not stored', { cause: error })
    }
    return { id: String(reply[0]), topics: input.topics, duplicate: reply[1] === 1 }
  }

  subscribe (topics: string[], options: SubscribeOptions = {}): Subscription {
    return this.fanout.subscribe(topics, options.lastEventId)
  }

  health (): BrokerHealth {
    const publisher = this.publisher.status
    const subscriber = this.subscriber.status
    return { broker: 'redis', status: publisher === 'ready' && subscriber === 'ready' ? 'ok' : 'degraded', redis: { publisher, subscriber } }
  }

  listenerCount (topic: string): number {
    return this.fanout.listenerCount(topic)
  }

  get subscriptionCount (): number {
    return this.fanout.subscriptionCount
  }

  async close (): Promise<void> {
    this.closed = true
    clearTimeout(this.resyncTimer)
    this.fanout.endAll()
    this.subscriber.off('message', this.onMessage)
    this.subscriber.off('close', this.onInterrupted)
    this.subscriber.off('ready', this.onSubscriberReady)
    this.publisher.off('ready', this.onPublisherReady)
  }

  private readonly onMessage = (channel: string, message: string): void => {
    if (!channel.startsWith(this.channelPrefix)) return
    const topic = channel.slice(this.channelPrefix.length)
    // An event published to several topics arrives once per channel, back to back: encode it once.
    let event = this.lastReceived
    const idEnd = message.indexOf('\n')
    const id = Number(message.slice(0, idEnd))
    if (event === undefined || event.id !== id) {
      event = toHeraldEvent(parseMessage(id, message, idEnd))
      this.lastReceived = event
    }
    this.fanout.dispatch(topic, event)
  }

  private readonly onInterrupted = (): void => {
    if (this.closed) return
    // Events may be published elsewhere while we cannot hear them: hold live delivery until a catch-up.
    this.interrupted = true
    this.fanout.holdAll()
  }

  private readonly onSubscriberReady = (): void => {
    if (!this.interrupted || this.closed) return
    this.interrupted = false
    const channels = this.fanout.activeTopics.map((topic) => this.channelPrefix + topic)
    // ioredis resubscribes by itself; awaiting our own SUBSCRIBE orders the catch-up after it.
    const subscribed = channels.length > 0 ? this.subscriber.subscribe(...channels) : Promise.resolve()
    subscribed.then(() => this.fanout.resync(), (error: unknown) => {
      this.options.onRecoverableError?.(error)
      this.scheduleResync()
    })
  }

  private readonly onPublisherReady = (): void => {
    if (!this.closed && this.resyncTimer !== undefined) this.resyncNow()
  }

  private scheduleResync (): void {
    if (this.closed || this.resyncTimer !== undefined) return
    this.resyncTimer = setTimeout(() => this.resyncNow(), RESYNC_RETRY_MS)
    this.resyncTimer.unref()
  }

  private resyncNow (): void {
    clearTimeout(this.resyncTimer)
    this.resyncTimer = undefined
    if (this.subscriber.status === 'ready') this.fanout.resync()
    else this.scheduleResync()
  }

  private async head (): Promise<number> {
    try {
      return Number(await this.publisher.get(`${this.options.prefix}seq`) ?? 0)
    } catch (error) {
      throw new BrokerUnavailableError('Redis is unreachable', { cause: error })
    }
  }

  private async read (topics: readonly string[], afterId: number): Promise<HistoryRead> {
    const prefix = this.options.prefix
    const keys = [`${prefix}seq`, ...topics.map((topic) => `${prefix}history:${topic}`)]
    let reply: unknown[]
    try {
      reply = await this.publisher.heraldRead(keys.length, ...keys, afterId + 1)
    } catch (error) {
      throw new BrokerUnavailableError('Redis is unreachable', { cause: error })
    }
    const histories: TopicHistory[] = topics.map((topic, index) => ({
      topic,
      trimmedThrough: parseInt(reply[1 + index * 2] as string, 10),
      events: (reply[2 + index * 2] as StreamEntry[]).map(parseEntry)
    }))
    return { head: Number(reply[0]), topics: histories }
  }
}

function parseMessage (id: number, message: string, idEnd: number): StoredEvent {
  const typeEnd = message.indexOf('\n', idEnd + 1)
  const retryEnd = message.indexOf('\n', typeEnd + 1)
  const event: StoredEvent = { id, data: message.slice(retryEnd + 1), time: Date.now() }
  const type = message.slice(idEnd + 1, typeEnd)
  const retry = message.slice(typeEnd + 1, retryEnd)
  if (type !== '') event.type = type
  if (retry !== '') event.retry = Number(retry)
  return event
}

function parseEntry ([streamId, fields]: StreamEntry): StoredEvent {
  const values: Record<string, string> = {}
  for (let index = 0; index < fields.length; index += 2) values[fields[index] as string] = fields[index + 1] as string
  const event: StoredEvent = { id: parseInt(streamId, 10), data: values.d ?? '', time: Number(values.ms ?? 0) }
  if (values.t !== undefined && values.t !== '') event.type = values.t
  if (values.r !== undefined && values.r !== '') event.retry = Number(values.r)
  return event
}
