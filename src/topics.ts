/**
 * Topic names and the patterns that match them. A name is 1–256 characters from a URL-safe set, so it can
 * stand unescaped in a query string, a Redis key and a log line. `/` separates segments for patterns.
 */

export const TOPIC_MAX_LENGTH = 256
export const TOPIC_CHARACTERS = 'A-Z a-z 0-9 and - _ . ~ : @ /'
export const TOPIC_PATTERN = '^[A-Za-z0-9_.~:@/-]{1,256}$'

const TOPIC_RE = new RegExp(TOPIC_PATTERN)

export function isTopicName (value: string): boolean {
  return TOPIC_RE.test(value)
}

/** Why a value is not a topic name, for error messages; undefined when it is one. */
export function topicNameProblem (value: string): string | undefined {
  if (value.length === 0) return 'topic names must not be empty'
  if (value.length > TOPIC_MAX_LENGTH) return `topic name is ${value.length} characters long; the limit is ${TOPIC_MAX_LENGTH}`
  if (!TOPIC_RE.test(value)) return `topic ${JSON.stringify(value)} has a character outside ${TOPIC_CHARACTERS}`
  return undefined
}

/** Topics in first-seen order, without repeats. */
export function uniqueTopics (topics: Iterable<string>): string[] {
  return [...new Set(topics)]
}
