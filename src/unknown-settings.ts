/** What Herald says about one HERALD_* variable that names no setting. */
export interface UnknownSetting {
  variable: string
  /** The real setting whose name is closest, when one is close enough to be the one meant. */
  suggestion: string | undefined
  message: string
}

const PREFIX = 'HERALD_'

/**
 * The HERALD_* variables of `environment` that are not among `known` (the settings table's names), each with the
 * closest real setting by edit distance: a typo would otherwise be ignored without a word, and the default used.
 * Only HERALD_* names are Herald's to judge; the rest of the environment belongs to everything else on the machine.
 */
export function unknownSettings (environment: Readonly<Record<string, string | undefined>>, known: readonly string[]): UnknownSetting[] {
  const names = new Set(known)
  return Object.keys(environment)
    .filter((variable) => variable.startsWith(PREFIX) && !names.has(variable))
    .sort()
    .map((variable) => {
      const suggestion = closestSetting(variable, known)
      const hint = suggestion === undefined ? 'see the configuration table for the settings there are' : `did you mean ${suggestion}?`
      return { variable, suggestion, message: `${variable} is not a Herald setting and is ignored; ${hint}` }
    })
}

/**
 * The known name closest to `variable`, or undefined when none is within half its length (after the common
 * prefix): a distant name is no help. A prefixed spelling of an unprefixed setting (HERALD_REDIS_URL) is that one.
 */
export function closestSetting (variable: string, known: readonly string[]): string | undefined {
  const bare = variable.slice(PREFIX.length)
  if (known.includes(bare)) return bare
  let best: { name: string, distance: number } | undefined
  for (const name of known) {
    const distance = editDistance(variable, name)
    if (best === undefined || distance < best.distance) best = { name, distance }
  }
  return best !== undefined && best.distance <= Math.max(2, Math.floor(bare.length / 2)) ? best.name : undefined
}

/** Levenshtein distance: the fewest insertions, deletions and substitutions that turn `a` into `b`. */
export function editDistance (a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1)
      current.push(Math.min((previous[j] as number) + 1, (current[j - 1] as number) + 1, substitution))
    }
    previous = current
  }
  return previous[b.length] as number
}
