import type { PublishInput, PublishResult } from './transport/transport.js'

/** What became of one event of a batch: its result when it was stored (or found a duplicate), else why not. */
export type BatchOutcome = { result: PublishResult } | { error: Error }

/** The outcome of an event that was never sent to the broker, because an earlier one of its batch failed. */
export class NotAttemptedError extends Error {
  constructor (readonly failedIndex: number) {
    super(`not attempted: event ${failedIndex} of the batch failed first`)
    this.name = 'NotAttemptedError'
  }
}

/**
 * Publishes a batch one event after another, in order, with a publish that takes one event. After the first
 * failure nothing more is sent: the events after it are NotAttemptedError, so the caller knows exactly which
 * were stored (those with a result), which were not (those after the failure), and which failed (its error
 * says whether it may have been stored).
 */
export async function publishEach (publish: (input: PublishInput) => Promise<PublishResult>, inputs: readonly PublishInput[]): Promise<BatchOutcome[]> {
  const outcomes: BatchOutcome[] = []
  for (const input of inputs) {
    try {
      outcomes.push({ result: await publish(input) })
    } catch (error) {
      const failedIndex = outcomes.length
      outcomes.push({ error: error instanceof Error ? error : new Error(String(error)) })
      while (outcomes.length < inputs.length) outcomes.push({ error: new NotAttemptedError(failedIndex) })
      break
    }
  }
  return outcomes
}

/** What a batch's reply says of one event. */
export type EventStatus = 'stored' | 'not-stored' | 'unknown'

export interface EventOutcome {
  status: EventStatus
  ids?: string[]
  topics?: string[]
  duplicate?: boolean
}

/** A publish's ids, one per topic in the order of its topics. */
export function idsOf (result: PublishResult): string[] {
  return result.topics.map(() => result.id)
}

/**
 * Whether an event whose publish failed may still be stored: a command Redis did not answer in time was sent,
 * and Redis runs it when it wakes up. Any other failure (no connection, an error reply, not attempted) stored
 * nothing.
 */
export function mayBeStored (error: Error): boolean {
  const cause = (error as { cause?: unknown }).cause
  return cause instanceof Error && cause.message === 'Command timed out'
}

/** Each event's outcome as the reply says it, and the first failure, if any. */
export function describeOutcomes (outcomes: readonly BatchOutcome[]): { events: EventOutcome[], failure: Error | undefined } {
  let failure: Error | undefined
  const events = outcomes.map((outcome): EventOutcome => {
    if ('result' in outcome) {
      const { result } = outcome
      return { status: 'stored', ids: idsOf(result), topics: result.topics, duplicate: result.duplicate }
    }
    if (failure === undefined || failure instanceof NotAttemptedError) failure = outcome.error
    return { status: mayBeStored(outcome.error) ? 'unknown' : 'not-stored' }
  })
  return { events, failure }
}
