import type { Subscription } from './subscription.js'

/** What a publisher hands to a broker. `data` is JSON text, encoded once by the caller. */
export interface PublishInput {
  topics: string[]
  data: string
  type?: string
  retry?: number
  idempotencyKey?: string
}

export interface PublishResult {
  /** The event's id: a decimal integer that grows with publish order. */
  id: string
  topics: string[]
  /** True when an earlier publish with the same idempotency key already stored this event. */
  duplicate: boolean
}

export interface SubscribeOptions {
  /** The client's last seen event id (`Last-Event-ID`); replay starts after it. */
  lastEventId?: string
}

export interface BrokerHealth {
  broker: 'memory' | 'redis'
  status: 'ok' | 'degraded'
  redis?: { publisher: string, subscriber: string }
}

/** The contract both brokers keep; the contract tests run against each. */
export interface Broker {
  readonly kind: 'memory' | 'redis'
  publish (input: PublishInput): Promise<PublishResult>
  /** One object-mode Readable per connection; destroying it releases every listener it holds. */
  subscribe (topics: string[], options?: SubscribeOptions): Subscription
  health (): BrokerHealth
  /** Local listeners of a topic, for tests and metrics. */
  listenerCount (topic: string): number
  /** Open subscriptions on this instance. */
  readonly subscriptionCount: number
  /** Ends every subscription (their streams finish) and stops listening. */
  close (): Promise<void>
}

/** An event as history keeps it. */
export interface StoredEvent {
  id: number
  type?: string
  retry?: number
  data: string
  /** Milliseconds since the epoch when it was published, for the history time limit. */
  time: number
}

/** Thrown when the broker cannot take an event now; publish answers 503. */
export class BrokerUnavailableError extends Error {
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'BrokerUnavailableError'
  }
}
