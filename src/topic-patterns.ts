/**
 * Topic patterns for token claims and private topics. `/` separates segments; `*` stands for exactly one
 * segment and `**`, only as the last segment, for any rest (one or more segments): `chat/*`, `users/42/**`.
 * Any other segment matches itself. `**` alone matches every topic.
 */

const PATTERN_SEGMENT = /^(\*\*?|[A-Za-z0-9_.~:@-]*)$/

export type TopicMatcher = (topic: string) => boolean

/** Why a pattern is unusable, for configuration and token errors; undefined when it is fine. */
export function patternProblem (pattern: string): string | undefined {
  if (pattern.length === 0 || pattern.length > 256) return 'a pattern is 1-256 characters'
  const segments = pattern.split('/')
  for (const [index, segment] of segments.entries()) {
    if (!PATTERN_SEGMENT.test(segment)) return `segment ${JSON.stringify(segment)} mixes * with other characters or has a character outside the topic set`
    if (segment === '**' && index !== segments.length - 1) return '** may only be the last segment'
  }
  return undefined
}

export function compilePattern (pattern: string): TopicMatcher {
  const problem = patternProblem(pattern)
  if (problem !== undefined) throw new TypeError(`bad topic pattern ${JSON.stringify(pattern)}: ${problem}`)
  if (!pattern.includes('*')) return (topic) => topic === pattern
  const segments = pattern.split('/')
  const rest = segments.at(-1) === '**'
  const fixed = rest ? segments.slice(0, -1) : segments
  return (topic) => {
    const parts = topic.split('/')
    if (rest ? parts.length <= fixed.length : parts.length !== fixed.length) return false
    for (let index = 0; index < fixed.length; index++) {
      const segment = fixed[index]
      if (segment !== '*' && segment !== parts[index]) return false
      if (segment === '*' && parts[index] === '') return false
    }
    return true
  }
}

/** One matcher for a list of patterns: true when any matches. */
export function compilePatterns (patterns: readonly string[]): TopicMatcher {
  const matchers = patterns.map(compilePattern)
  return (topic) => matchers.some((matches) => matches(topic))
}
