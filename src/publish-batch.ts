import { mayHaveRun } from './transport/redis-errors.js'
import type { BatchOutcome, PublishInput, TopicOutcome } from './transport/transport.js'

/**
 * What a batch's reply says of one event: `stored` on every topic, `partial` (stored on some topics, not or maybe
 * not on others), `not-stored`, or `unknown` (stored on no topic for sure, and maybe on some).
 */
export type EventStatus = 'stored' | 'partial' | 'not-stored' | 'unknown'
/** What a batch's reply says of one event on one topic. */
export type TopicStatus = 'stored' | 'not-stored' | 'unknown'

export interface EventTopicOutcome {
  topic: string
  status: TopicStatus
  id?: string
  duplicate?: boolean
}

export interface EventOutcome {
  status: EventStatus
  ids?: string[]
  topics?: string[]
  duplicate?: boolean
  /** On an event that was not stored on every topic: each of its topics, in its order, and what became of it there. */
  byTopic?: EventTopicOutcome[]
}

/** The first failure of a batch: its event's index, the topic it failed on when the event has several, and why. */
export interface BatchFailure {
  index: number
  topic?: string
  error: Error
}

/** Each event's outcome as the reply says it, and the first failure, if any. */
export function describeOutcomes (inputs: readonly PublishInput[], outcomes: readonly BatchOutcome[]): { events: EventOutcome[], failure: BatchFailure | undefined } {
  let failure: BatchFailure | undefined
  const events = outcomes.map((outcome, index): EventOutcome => {
    if ('result' in outcome) {
      const { ids, topics, duplicate } = outcome.result
      return { status: 'stored', ids, topics, duplicate }
    }
    // Without the transport's word per topic, every topic failed as the event did.
    const onTopics = outcome.byTopic ?? (inputs[index] as PublishInput).topics.map((topic): TopicOutcome => ({ topic, error: outcome.error }))
    if (failure === undefined) {
      const failed = onTopics.find((onTopic) => 'error' in onTopic)
      failure = onTopics.length > 1 && failed !== undefined ? { index, topic: failed.topic, error: outcome.error } : { index, error: outcome.error }
    }
    const byTopic = onTopics.map((onTopic): EventTopicOutcome => 'error' in onTopic
      ? { topic: onTopic.topic, status: mayHaveRun(onTopic.error) ? 'unknown' : 'not-stored' }
      : { topic: onTopic.topic, status: 'stored', id: onTopic.id, duplicate: onTopic.duplicate })
    return { status: eventStatus(byTopic), byTopic }
  })
  return { events, failure }
}

function eventStatus (byTopic: readonly EventTopicOutcome[]): EventStatus {
  if (byTopic.every((onTopic) => onTopic.status === 'stored')) return 'stored'
  if (byTopic.some((onTopic) => onTopic.status === 'stored')) return 'partial'
  return byTopic.some((onTopic) => onTopic.status === 'unknown') ? 'unknown' : 'not-stored'
}
