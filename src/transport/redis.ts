import calculateSlot from 'cluster-key-slot'
import type { Cluster, Redis } from 'ioredis'
import { BrokerUnavailableError, InvalidEventError } from '../errors.js'
import { publishFailure, unexpectedPublishReply } from './redis-errors.js'
import type { Position } from '../protocol.js'
import { functionLibrary, publishKeys, readKeys, type FunctionLibrary } from './redis-functions.js'
import { parseChannelMessage, parseHistoryEntry } from './redis-messages.js'
import type { BatchOutcome, PublishInput, PublishResult, StoredEvent, TopicOutcome, TopicRead, Transport, TransportHealth, TransportSink } from './transport.js'

export interface RedisTransportOptions {
  prefix: string
  historySize: number
  /** How long a topic's history is kept after its last event: every key Herald writes expires. */
  historyRetentionMs: number
  idempotencyTtlMs: number
  /** Told about failures the transport recovers from by itself (a re-subscribe that failed is retried). */
  onRecoverableError?: (error: unknown) => void
  /** Told how long each call took (ms), failed ones included, for metrics. */
  onCommand?: (command: 'publish' | 'read', milliseconds: number) => void
  /** Told about a channel message Herald did not write (dropped): another client published on a Herald channel. */
  onForeignMessage?: (channel: string, problem: string) => void
}

type Client = Redis | Cluster

/** How long to wait before retrying a re-subscribe that failed. */
const RESUBSCRIBE_RETRY_MS = 500

/**
 * The Redis transport: every topic's keys and channel under one hash tag, `<prefix>{<topic>}`, so a publish to one
 * topic is one single-slot FCALL of the Function library (redis/herald.lua) and the same code runs on one Redis, a
 * Sentinel-managed one and a Redis Cluster. Live events come back through ONE subscriber connection per process
 * (one per shard on a cluster), SSUBSCRIBEd to a topic's channel while the hub listens to it. When the subscriber
 * connection drops it says `interrupted`; when it is back AND subscribed again to every channel (by our own
 * SSUBSCRIBE, not ioredis's: that one is still in flight when ioredis reports ready), it says `restored`.
 */
export class RedisTransport implements Transport {
  readonly kind = 'redis'
  private readonly library: FunctionLibrary
  private readonly channels = new Set<string>()
  private sink: TransportSink | undefined
  private interrupted = false
  private closed = false
  private retryTimer: NodeJS.Timeout | undefined
  private loading: Promise<void> | undefined
  /** On a cluster: topics whose shard's subscriber was lost, until the shards are subscribed again. */
  private readonly interruptedTopics = new Set<string>()

  constructor (private readonly publisher: Client, private readonly subscriber: Client, private readonly options: RedisTransportOptions) {
    this.library = functionLibrary(options)
  }

  /** Loads the Function library where it is missing or differs (on every master of a cluster). */
  async load (): Promise<void> {
    this.loading ??= this.loadNow().finally(() => { this.loading = undefined })
    await this.loading
  }

  bind (sink: TransportSink): void {
    this.sink = sink
    this.subscriber.on('smessage', this.onMessage)
    if (isCluster(this.subscriber)) {
      // One subscriber connection per shard, managed by ioredis: a shard's loss holds only its topics.
      this.subscriber.on('-node', this.onNodeLost)
      this.subscriber.on('-subscriber', this.onSubscriberLost)
      this.subscriber.on('subscribersReady', this.onSubscribersReady)
    } else {
      this.subscriber.on('close', this.onClose)
      this.subscriber.on('ready', this.onReady)
    }
  }

  async publish (input: PublishInput): Promise<PublishResult> {
    const started = performance.now()
    try {
      const byTopic = topicOutcomes(input, await Promise.allSettled(this.publishCalls(input)))
      const failed = byTopic.find(failedOn)
      if (failed === undefined) return storedResult(input, byTopic)
      // An event on several topics is one call per topic: say where it is stored, so the client knows to retry.
      const storedOn = byTopic.filter((outcome) => !failedOn(outcome)).map((outcome) => outcome.topic)
      if (storedOn.length > 0 && (failed.error as { statusCode?: number }).statusCode === 503) {
        failed.error.message += `; but it was stored on ${storedOn.join(', ')}: retry with the same idempotency key to store it on the others once`
      }
      throw failed.error
    } finally {
      this.options.onCommand?.('publish', performance.now() - started)
    }
  }

  async publishBatch (inputs: readonly PublishInput[]): Promise<BatchOutcome[]> {
    const started = performance.now()
    // Every call is written at once (one round trip, per shard on a cluster); Redis runs them in order per topic.
    const calls = inputs.map((input) => this.publishCalls(input))
    const outcomes: BatchOutcome[] = []
    for (const [index, input] of inputs.entries()) {
      // Each event's own outcome, topic by topic: one that failed on a topic says so, and what it became on the
      // others, stored or not, exactly.
      const byTopic = topicOutcomes(input, await Promise.allSettled(calls[index] as Array<Promise<unknown>>))
      const failed = byTopic.find(failedOn)
      outcomes.push(failed !== undefined ? { error: failed.error, byTopic } : { result: storedResult(input, byTopic) })
    }
    this.options.onCommand?.('publish', performance.now() - started)
    return outcomes
  }

  async heads (topics: readonly string[]): Promise<Position[]> {
    try {
      return await Promise.all(topics.map(async (topic) => {
        const [epoch, seq] = await this.publisher.hmget(`${this.keyOf(topic)}:m`, 'e', 's')
        return epoch === null || epoch === undefined ? { epoch: '', seq: 0 } : { epoch, seq: Number(seq ?? 0) }
      }))
    } catch (error) {
      throw new BrokerUnavailableError('Redis is unreachable', { cause: error })
    }
  }

  async read (topic: string, after: Position, limit: number, maxBytes: number): Promise<TopicRead> {
    const started = performance.now()
    let reply: unknown
    try {
      reply = await this.call(this.library.read, readKeys(this.options.prefix, topic), [after.epoch, after.seq, limit, Number.isFinite(maxBytes) ? maxBytes : Number.MAX_SAFE_INTEGER])
    } catch (error) {
      throw new BrokerUnavailableError('Redis is unreachable', { cause: error })
    } finally {
      this.options.onCommand?.('read', performance.now() - started)
    }
    return parseRead(reply)
  }

  async listen (topic: string): Promise<void> {
    const channel = this.keyOf(topic)
    this.channels.add(channel)
    await this.subscriber.ssubscribe(channel)
  }

  unlisten (topic: string): void {
    const channel = this.keyOf(topic)
    this.channels.delete(channel)
    this.subscriber.sunsubscribe(channel).catch(() => {})
  }

  health (): TransportHealth {
    const publisher = this.publisher.status
    const subscriber = this.subscriber.status
    const whole = publisher === 'ready' && subscriber === 'ready' && !this.interrupted && this.interruptedTopics.size === 0
    return { status: whole ? 'ok' : 'degraded', redis: { publisher, subscriber } }
  }

  async close (): Promise<void> {
    this.closed = true
    clearTimeout(this.retryTimer)
    this.subscriber.off('smessage', this.onMessage)
    this.subscriber.off('close', this.onClose)
    this.subscriber.off('ready', this.onReady)
    this.subscriber.off('-node', this.onNodeLost)
    this.subscriber.off('-subscriber', this.onSubscriberLost)
    this.subscriber.off('subscribersReady', this.onSubscribersReady)
    this.sink = undefined
  }

  private keyOf (topic: string): string {
    return `${this.options.prefix}{${topic}}`
  }

  private topicOf (channel: string): string {
    return channel.slice(this.options.prefix.length + 1, -1)
  }

  /** An event's publish calls, one per topic, in its topic order. */
  private publishCalls (input: PublishInput): Array<Promise<unknown>> {
    return input.topics.map(async (topic) => await this.call(this.library.publish, publishKeys(this.options.prefix, topic, input.idempotencyKey), publishArguments(input)))
  }

  private corked = false

  /**
   * Holds the publisher's writes until the event loop's next check phase, so the FCALLs of the requests parsed in
   * one read go to Redis in one write system call instead of one each (on a cluster, one per master). The sockets
   * corked are the ones uncorked, even if a reconnection replaces them meanwhile.
   */
  private cork (): void {
    if (this.corked) return
    const clients: Redis[] = isCluster(this.publisher) ? this.publisher.nodes('master') : [this.publisher]
    const streams = clients.map((client) => client.stream).filter((stream) => stream !== undefined && stream.writableCorked === 0)
    if (streams.length === 0) return
    this.corked = true
    for (const stream of streams) stream.cork()
    setImmediate(() => {
      this.corked = false
      for (const stream of streams) stream.uncork()
    })
  }

  /** FCALL of one of the library's functions; loads the library once if Redis lost it, and retries. */
  private async call (name: string, keys: string[], args: Array<string | number>): Promise<unknown> {
    this.cork()
    try {
      return await this.publisher.fcall(name, keys.length, ...keys, ...args)
    } catch (error) {
      if (!String((error as Error).message).includes('Function not found')) throw error
      await this.load()
      return await this.publisher.fcall(name, keys.length, ...keys, ...args)
    }
  }

  private async loadNow (): Promise<void> {
    const clients: Redis[] = isCluster(this.publisher) ? this.publisher.nodes('master') : [this.publisher]
    await Promise.all(clients.map(async (client) => {
      const listed = await client.call('FUNCTION', 'LIST', 'LIBRARYNAME', this.library.name, 'WITHCODE') as unknown[]
      if (libraryCode(listed, this.library.name) === this.library.code) return
      await client.call('FUNCTION', 'LOAD', 'REPLACE', this.library.code)
    }))
  }

  private readonly onMessage = (channel: string, message: string): void => {
    const sink = this.sink
    if (sink === undefined || !this.channels.has(channel)) return
    const parsed = parseChannelMessage(message)
    if (typeof parsed === 'string') {
      this.options.onForeignMessage?.(channel, parsed)
      return
    }
    sink.deliver(this.topicOf(channel), parsed)
  }

  /** A cluster node's connection is gone: the topics whose slots it served are interrupted until the shards are back. */
  private readonly onNodeLost = (_node: unknown, nodeKey?: string): void => {
    if (this.closed) return
    const slots = (this.subscriber as Cluster).slots
    const topics: string[] = []
    for (const channel of this.channels) {
      const owners = slots[calculateSlot(channel)]
      if (nodeKey === undefined || owners === undefined || owners[0] === nodeKey) topics.push(this.topicOf(channel))
    }
    if (topics.length === 0) return
    for (const topic of topics) this.interruptedTopics.add(topic)
    this.sink?.interrupted(topics)
    this.recoverShards()
  }

  private readonly onSubscriberLost = (): void => {
    if (this.closed) return
    for (const channel of this.channels) this.interruptedTopics.add(this.topicOf(channel))
    this.sink?.interrupted([...this.interruptedTopics])
    this.recoverShards()
  }

  /** SSUBSCRIBEs channels one by one: on a cluster, one SSUBSCRIBE may name channels of one slot only. */
  private async subscribeEach (channels: string[]): Promise<void> {
    await Promise.all(channels.map(async (channel) => await this.subscriber.ssubscribe(channel)))
  }

  /**
   * Subscribes the interrupted topics again, through whichever node now owns each slot (ioredis routes an SSUBSCRIBE
   * by the slot map it refreshes), then says they are restored; retried until every one of them is subscribed.
   */
  private recoverShards (): void {
    if (this.retryTimer !== undefined || this.closed) return
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      const topics = [...this.interruptedTopics].filter((topic) => this.channels.has(this.keyOf(topic)))
      if (topics.length === 0) {
        this.interruptedTopics.clear()
        return
      }
      this.subscribeEach(topics.map((topic) => this.keyOf(topic))).then(() => {
        if (this.closed) return
        for (const topic of topics) this.interruptedTopics.delete(topic)
        this.sink?.restored(topics)
        if (this.interruptedTopics.size > 0) this.recoverShards()
      }, (error: unknown) => {
        this.options.onRecoverableError?.(error)
        this.recoverShards()
      })
    }, RESUBSCRIBE_RETRY_MS)
    this.retryTimer.unref()
  }

  /**
   * The shards' subscribers are set up again (a topology change: a failover, a slot migration, a node back). Events
   * published while a channel moved may not have come: every topic is subscribed again and caught up from history.
   */
  private readonly onSubscribersReady = (): void => {
    if (this.closed) return
    const channels = [...this.channels]
    if (channels.length === 0) return
    this.subscribeEach(channels).then(() => {
      if (this.closed) return
      this.interruptedTopics.clear()
      this.sink?.restored(channels.map((channel) => this.topicOf(channel)))
    }, (error: unknown) => { this.options.onRecoverableError?.(error) })
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
    const subscribed = channels.length > 0 ? this.subscriber.ssubscribe(...channels) : Promise.resolve()
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

function isCluster (client: Client): client is Cluster {
  return 'nodes' in client && typeof client.nodes === 'function'
}

/** The arguments after the key: data, type, retry, idempotency key, and every topic when there are several. */
function publishArguments (input: PublishInput): string[] {
  return [
    input.data,
    input.type ?? '',
    input.retry === undefined ? '' : String(input.retry),
    input.topics.length > 1 ? input.topics.join(' ') : ''
  ]
}

/** What became of an event on each of its topics, from its calls' outcomes in its topic order. */
function topicOutcomes (input: PublishInput, settled: Array<PromiseSettledResult<unknown>>): TopicOutcome[] {
  return settled.map((outcome, position): TopicOutcome => {
    const topic = input.topics[position] as string
    if (outcome.status === 'rejected') return { topic, error: publishError(outcome.reason) }
    const stored = storedOn(outcome.value)
    return stored === undefined ? { topic, error: unexpectedPublishReply() } : { topic, ...stored }
  })
}

function failedOn (outcome: TopicOutcome): outcome is Extract<TopicOutcome, { error: Error }> {
  return 'error' in outcome
}

/** The result of an event stored on every topic: a duplicate only when its idempotency key was known on each. */
function storedResult (input: PublishInput, byTopic: readonly TopicOutcome[]): PublishResult {
  const stored = byTopic as ReadonlyArray<{ id: string, duplicate: boolean }>
  return { ids: stored.map((outcome) => outcome.id), topics: input.topics, duplicate: stored.every((outcome) => outcome.duplicate) }
}

/** The publish function's answer on one topic: the event's id there, and whether its idempotency key was known. */
function storedOn (reply: unknown): { id: string, duplicate: boolean } | undefined {
  if (!Array.isArray(reply) || typeof reply[0] !== 'string') return undefined
  return { id: reply[0], duplicate: reply[1] === 1 }
}

/** Why a publish failed, as the reply says it: a refusal of the function's checks is the caller's (400). */
function publishError (error: unknown): Error {
  if ((error as { statusCode?: number }).statusCode !== undefined) return error as Error
  const message = String((error as Error).message)
  if (message.startsWith('HERALD_INVALID ')) return new InvalidEventError(message.slice('HERALD_INVALID '.length))
  return publishFailure(error)
}

function parseRead (reply: unknown): TopicRead {
  if (!Array.isArray(reply) || reply.length !== 5 || typeof reply[0] !== 'string' || !Array.isArray(reply[3])) {
    throw new BrokerUnavailableError('Redis answered a history read with something Herald did not expect')
  }
  const epoch = reply[0]
  const events: StoredEvent[] = []
  for (const entry of reply[3] as unknown[]) {
    const event = parseHistoryEntry(epoch, entry)
    if (event !== undefined) events.push(event)
  }
  return { epoch, head: Number(reply[1]), oldest: Number(reply[2]), events, full: reply[4] === 1 }
}

/** The code of a library in a FUNCTION LIST … WITHCODE reply, or undefined. */
function libraryCode (listed: unknown[], name: string): string | undefined {
  for (const library of listed) {
    if (!Array.isArray(library)) continue
    const fields = new Map<unknown, unknown>()
    for (let index = 0; index + 1 < library.length; index += 2) fields.set(library[index], library[index + 1])
    if (fields.get('library_name') === name) return fields.get('library_code') as string | undefined
  }
  return undefined
}
