import type { BatchOutcome, PublishInput } from './transport/transport.js'

/** What a batch's reply says of one event. */
export type EventStatus = 'stored' | 'not-stored' | 'unknown'

export interface EventOutcome {
  status: EventStatus
  ids?: string[]
  topics?: string[]
  duplicate?: boolean
}

/**
 * Whether an event whose publish failed may still be stored. A call Redis did not answer in time was sent, and
 * Redis runs it when it wakes up. An event on several topics is one call per topic, so one that failed on a topic
 * may be stored on another. Otherwise (no connection, a refusal) nothing was stored.
 */
export function mayBeStored (input: PublishInput, error: Error): boolean {
  const cause = (error as { cause?: unknown }).cause
  return input.topics.length > 1 || (cause instanceof Error && cause.message === 'Command timed out')
}

/** Each event's outcome as the reply says it, and the first failure with its event's index, if any. */
export function describeOutcomes (inputs: readonly PublishInput[], outcomes: readonly BatchOutcome[]): { events: EventOutcome[], failure: { index: number, error: Error } | undefined } {
  let failure: { index: number, error: Error } | undefined
  const events = outcomes.map((outcome, index): EventOutcome => {
    if ('result' in outcome) {
      const { ids, topics, duplicate } = outcome.result
      return { status: 'stored', ids, topics, duplicate }
    }
    failure ??= { index, error: outcome.error }
    return { status: mayBeStored(inputs[index] as PublishInput, outcome.error) ? 'unknown' : 'not-stored' }
  })
  return { events, failure }
}
