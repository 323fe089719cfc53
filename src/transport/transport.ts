/**
 * The transport contract: what the hub needs from a message backend, and nothing more. A transport publishes
 * (assigning ids and storing history), reads history, starts and stops receiving a topic's live events, and
 * says when live delivery was interrupted and when it is whole again. Subscriptions, the hand-over from
 * history to live and resync belong to the hub (src/hub), which works the same over every transport.
 */

/** What a publisher hands over. `data` is JSON text, encoded once by the caller. */
export interface PublishInput {
  topics: string[]
  data: string
  type?: string
  retry?: number
  idempotencyKey?: string
}

export interface PublishResult {
  /** The event's id, `<epoch>-<sequence>` (see eventId). */
  id: string
  topics: string[]
  /** True when an earlier publish with the same idempotency key already stored this event. */
  duplicate: boolean
}

/**
 * An event as history keeps it and as live delivery carries it. Its id on the wire is `<epoch>-<id>`: the
 * sequence `id` grows with publish order within one epoch, and an epoch is one life of the id counter.
 */
export interface StoredEvent {
  /** The sequence number within the epoch. */
  id: number
  epoch: string
  type?: string
  retry?: number
  data: string
  /** Milliseconds since the epoch when it was published, for the history time limit. */
  time: number
}

/** The newest id of the current epoch. */
export interface Head {
  /**
   * The current epoch: created with the id counter, so a counter that was lost (Redis restarted empty, keys
   * expired) comes back with a new one. '' while none exists yet (no publish since the counter was lost).
   */
  epoch: string
  /** The newest sequence number assigned in the epoch (0 before its first publish). */
  seq: number
}

/** What a history read returns for a resume: the head, and per topic what it still holds. */
export interface HistoryRead {
  /** The current epoch ('' when none exists yet): the events and positions below are in it. */
  epoch: string
  /** The newest sequence number assigned in the epoch (0 before the first publish). */
  head: number
  topics: TopicHistory[]
}

export interface TopicHistory {
  topic: string
  /**
   * Retained events with an id above the asked-for position, oldest first: at most the page's `limit`, and no
   * more data than its `maxBytes` (past the first event, which always comes, so a page always progresses).
   */
  events: StoredEvent[]
  /** True when the page stopped at `limit` or `maxBytes`: the topic may hold events above its last one here. */
  full: boolean
  /** The largest id this topic has dropped from its history (0 if none). */
  trimmedThrough: number
  /**
   * True when events after the position may have been forgotten with the whole topic: its history expired
   * (retention after its last event) and the position is older than the retention. Conservative: a topic that
   * never had an event after an old position counts too.
   */
  forgotten: boolean
}

export interface TransportHealth {
  status: 'ok' | 'degraded'
  redis?: { publisher: string, subscriber: string }
}

/** Where a transport sends what it receives; the hub implements it. */
export interface TransportSink {
  /**
   * A live event for one topic. An event published to several topics arrives once per topic, back to back,
   * as the same object, so the receiver can encode it once.
   */
  deliver (topic: string, event: StoredEvent): void
  /** Live delivery stopped: events published from now on may not arrive until `restored`. */
  interrupted (): void
  /** Live delivery is whole again for every topic being received; history covers what was missed. */
  restored (): void
}

export interface Transport {
  readonly kind: 'memory' | 'redis'
  /** Connects the transport to its one receiver; called once, before anything else. */
  bind (sink: TransportSink): void
  /** Stores an event and sends it live; rejects with BrokerUnavailableError when it cannot store it now. */
  publish (input: PublishInput): Promise<PublishResult>
  /** The current epoch and its newest sequence number. */
  head (): Promise<Head>
  /**
   * One page of history: of each topic, at most `limit` events after a sequence number of the current epoch, and
   * at most `maxBytes` of their data (at least one event), with the head, in one consistent step. Never the whole
   * retention at once: the hub reads page after page, so a page's memory is bounded whatever the events' size.
   */
  read (topics: readonly string[], afterId: number, limit: number, maxBytes: number): Promise<HistoryRead>
  /** Starts receiving a topic's live events; resolves once events published afterwards will arrive. */
  listen (topic: string): Promise<void>
  /** Stops receiving a topic. */
  unlisten (topic: string): void
  health (): TransportHealth
  /** Stops receiving anything; connections it was given are closed by whoever opened them. */
  close (): Promise<void>
}

/** The id an event carries on the wire: `<epoch>-<seq>`, e.g. `m5x8k2qz3f-17`. */
export function eventId (epoch: string, seq: number): string {
  return `${epoch}-${seq}`
}
