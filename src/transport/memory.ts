import { formatPosition, type Position } from '../protocol.js'
import { TopicHistory } from './topic-history.js'
import type { BatchOutcome, PublishInput, PublishResult, StoredEvent, TopicRead, Transport, TransportHealth, TransportSink } from './transport.js'

export interface MemoryTransportOptions {
  historySize: number
  /** A topic (its counter, epoch and history) is forgotten this long after its last event. */
  historyRetentionMs: number
  idempotencyTtlMs: number
}

/** Epochs made in one millisecond by one process still differ: the low digits count them. */
let epochsMade = 0

/** A new epoch: the time in microseconds-like units, base 36, as the Redis function makes it. */
function newEpoch (): string {
  return (Date.now() * 1000 + (epochsMade++ % 1000)).toString(36)
}

interface TopicState {
  epoch: string
  seq: number
  history: TopicHistory
  newestTime: number
}

interface RememberedPublish {
  id: string
  expires: number
}

/**
 * The embedded transport: one process, no dependencies, the same contract as the Redis transport. A topic's epoch
 * begins with its first event in this process, and again after it was forgotten, so its ids mean nothing to another
 * process or a restarted one.
 */
export class MemoryTransport implements Transport {
  readonly kind = 'memory'
  // Insertion order is last-publish order (a topic moves to the end when published to), so the topics whose
  // newest event passed the retention are always at the front.
  private readonly topics = new Map<string, TopicState>()
  // Insertion order is expiry order (one window for all), so expired records are always at the front.
  private readonly idempotencyRecords = new Map<string, RememberedPublish>()
  private sink: TransportSink | undefined

  constructor (private readonly options: MemoryTransportOptions) {}

  bind (sink: TransportSink): void {
    this.sink = sink
  }

  async publish (input: PublishInput): Promise<PublishResult> {
    return this.publishNow(input)
  }

  async publishBatch (inputs: readonly PublishInput[]): Promise<BatchOutcome[]> {
    return inputs.map((input) => ({ result: this.publishNow(input) }))
  }

  async heads (topics: readonly string[]): Promise<Position[]> {
    this.forgetExpiredTopics(Date.now())
    return topics.map((topic) => {
      const state = this.topics.get(topic)
      return state === undefined ? { epoch: '', seq: 0 } : { epoch: state.epoch, seq: state.seq }
    })
  }

  async read (topic: string, after: Position, limit: number, maxBytes: number): Promise<TopicRead> {
    this.forgetExpiredTopics(Date.now())
    const state = this.topics.get(topic)
    if (state === undefined) return { epoch: '', head: 0, oldest: 1, events: [], full: false }
    const from = after.epoch === state.epoch ? after.seq : 0
    return {
      epoch: state.epoch,
      head: state.seq,
      oldest: state.history.oldest ?? state.seq + 1,
      ...state.history.after(from, limit, maxBytes)
    }
  }

  // Every event reaches the sink from publish(): there is nothing to start or stop per topic.
  async listen (): Promise<void> {}
  unlisten (): void {}

  health (): TransportHealth {
    return { status: 'ok' }
  }

  async close (): Promise<void> {
    this.sink = undefined
  }

  private publishNow (input: PublishInput): PublishResult {
    const now = Date.now()
    this.forgetExpiredTopics(now)
    const key = input.idempotencyKey
    if (key !== undefined) this.forgetExpiredRecords(now)
    const ids: string[] = []
    let duplicates = 0
    const several = input.topics.length > 1 ? input.topics : undefined
    for (const topic of input.topics) {
      const recordKey = key === undefined ? undefined : `${topic}\n${key}`
      const earlier = recordKey === undefined ? undefined : this.idempotencyRecords.get(recordKey)
      if (earlier !== undefined) {
        ids.push(earlier.id)
        duplicates++
        continue
      }
      const state = this.stateOf(topic)
      const event: StoredEvent = { epoch: state.epoch, seq: ++state.seq, data: input.data, time: now }
      if (input.type !== undefined) event.type = input.type
      if (input.retry !== undefined) event.retry = input.retry
      if (several !== undefined) event.topics = several
      state.history.append(event)
      state.newestTime = now
      const id = formatPosition(event)
      ids.push(id)
      if (recordKey !== undefined) this.idempotencyRecords.set(recordKey, { id, expires: now + this.options.idempotencyTtlMs })
      this.sink?.deliver(topic, event)
    }
    return { ids, topics: input.topics, duplicate: duplicates === input.topics.length }
  }

  /** The topic's state, moved to the end of the map (newest last), made with a new epoch if it has none. */
  private stateOf (topic: string): TopicState {
    let state = this.topics.get(topic)
    if (state === undefined) {
      state = { epoch: newEpoch(), seq: 0, history: new TopicHistory(this.options.historySize), newestTime: 0 }
    } else {
      this.topics.delete(topic)
    }
    this.topics.set(topic, state)
    return state
  }

  private forgetExpiredTopics (now: number): void {
    for (const [topic, state] of this.topics) {
      if (state.newestTime > now - this.options.historyRetentionMs) break
      this.topics.delete(topic)
    }
  }

  private forgetExpiredRecords (now: number): void {
    for (const [key, remembered] of this.idempotencyRecords) {
      if (remembered.expires > now) break
      this.idempotencyRecords.delete(key)
    }
  }
}
