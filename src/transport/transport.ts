/**
 * The transport contract: what the hub needs from a message backend, and nothing more. A transport publishes
 * (assigning each event a position on each of its topics and storing history), reads one topic's history in pages,
 * starts and stops receiving a topic's live events, and says when live delivery of some topics was interrupted and
 * when it is whole again. Streams, the hand-over from history to live and resync belong to the hub (src/hub), which
 * works the same over every transport.
 */
import type { Position } from '../protocol.js'

/** What a publisher hands over. `data` is JSON text, encoded once by the caller. */
export interface PublishInput {
  topics: string[]
  data: string
  type?: string
  retry?: number
  idempotencyKey?: string
}

export interface PublishResult {
  /** The event's position on each of its topics, `<epoch>-<seq>` of that topic, in the order of `topics`. */
  ids: string[]
  topics: string[]
  /** True when an earlier publish with the same idempotency key already stored this event (on every topic). */
  duplicate: boolean
}

/** What became of an event on one of its topics: its position there, or why it failed there. */
export type TopicOutcome = { topic: string, id: string, duplicate: boolean } | { topic: string, error: Error }

/**
 * One event of a batch: stored (on every topic), or not (and why). An event on several topics is stored topic by
 * topic, so one that failed lists, when the transport knows it, what became of it on each topic, in its order.
 */
export type BatchOutcome = { result: PublishResult } | { error: Error, byTopic?: TopicOutcome[] }

/**
 * An event as history keeps it and as live delivery carries it, on one topic: its position there is `<epoch>-<seq>`.
 */
export interface StoredEvent {
  epoch: string
  seq: number
  type?: string
  retry?: number
  data: string
  /** Milliseconds since 1970 when it was published, for the history time limit and the dispatch lag. */
  time: number
  /** Every topic it was published to, in publish order, when there were several: a stream on more than one of them
   * shows it once, for the first of them it subscribes to. */
  topics?: string[]
}

/** One page of one topic's history, for a resume. */
export interface TopicRead {
  /** The topic's current epoch ('' while it has none): the events below are of it. */
  epoch: string
  /** The newest sequence number of the epoch (0 when it has none). */
  head: number
  /** The oldest sequence number the history still holds (head + 1 when it holds none): anything below it that a
   * reader has not seen is lost to it. */
  oldest: number
  /** Retained events after the asked-for position, oldest first (from the epoch's start when the asked-for epoch is
   * not the current one): at most the page's `limit`, and no more data than its `maxBytes` past the first. */
  events: StoredEvent[]
  /** True when the page stopped at `limit` or `maxBytes`: the topic holds events after its last one here. */
  full: boolean
}

export interface TransportHealth {
  status: 'ok' | 'degraded'
  redis?: { publisher: string, subscriber: string }
}

/** Where a transport sends what it receives; the hub implements it. */
export interface TransportSink {
  /** A live event on one topic. An event published to several topics arrives once per topic. */
  deliver (topic: string, event: StoredEvent): void
  /** Live delivery of these topics (all when undefined) stopped: their events may not arrive until `restored`. */
  interrupted (topics?: readonly string[]): void
  /** Live delivery of these topics (all when undefined) is whole again; history covers what was missed. */
  restored (topics?: readonly string[]): void
}

export interface Transport {
  readonly kind: 'memory' | 'redis'
  /** Connects the transport to its one receiver; called once, before anything else. */
  bind (sink: TransportSink): void
  /** Stores an event and sends it live; rejects with BrokerUnavailableError when it cannot store it now. */
  publish (input: PublishInput): Promise<PublishResult>
  /** Publishes events in order, as one round trip where the backend allows; each event's outcome is its own. */
  publishBatch (inputs: readonly PublishInput[]): Promise<BatchOutcome[]>
  /** Each topic's current position: its epoch and newest sequence number. */
  heads (topics: readonly string[]): Promise<Position[]>
  /**
   * One page of a topic's history after a position: at most `limit` events and `maxBytes` of their data (at least
   * one event). Never the whole retention at once: the hub reads page after page, so a page's memory is bounded.
   */
  read (topic: string, after: Position, limit: number, maxBytes: number): Promise<TopicRead>
  /** Starts receiving a topic's live events; resolves once events published afterwards will arrive. */
  listen (topic: string): Promise<void>
  /** Stops receiving a topic. */
  unlisten (topic: string): void
  health (): TransportHealth
  /** Stops receiving anything; connections it was given are closed by whoever opened them. */
  close (): Promise<void>
}
