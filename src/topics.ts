/**
 * Topic names: 1–256 characters from a URL-safe set, so a name can stand unescaped in a query string, a Redis
 * key and a log line. `/` separates segments for the patterns of src/topic-patterns.ts.
 */

export const TOPIC_MAX_LENGTH = 256
export const TOPIC_CHARACTERS = 'A-Z a-z 0-9 and - _ . ~ : @ /'
export const TOPIC_PATTERN = '^[A-Za-z0-9_.~:@/-]{1,256}$'

/** Topics in first-seen order, without repeats. */
export function uniqueTopics (topics: Iterable<string>): string[] {
  return [...new Set(topics)]
}

/**
 * How many topics a publish body's `topic` names, before the body is validated: an array's length, else 1 (a
 * name, or anything the schema will refuse). Cheap on any input, so a limit can be checked before per-name work.
 */
export function namedTopicCount (topic: unknown): number {
  return Array.isArray(topic) ? topic.length : 1
}
