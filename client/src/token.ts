/** The longest a token is refreshed ahead of its expiry. */
const MAX_MARGIN_MS = 60_000
/** The soonest a refresh is scheduled, so a provider that hands out nearly expired tokens cannot spin. */
const MIN_DELAY_MS = 1_000

/** A JWT's `exp` and `iat` in ms, read without verifying (the server verifies); undefined when it has no `exp`. */
export function tokenTimes (token: string): { expiresAt: number, issuedAt: number | undefined } | undefined {
  const payload = token.split('.')[1]
  if (payload === undefined) return undefined
  try {
    const base64 = payload.replace(/-/g, '+').replace(/_/g, '/')
    const claims: unknown = JSON.parse(atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, '=')))
    if (typeof claims !== 'object' || claims === null) return undefined
    const { exp, iat } = claims as { exp?: unknown, iat?: unknown }
    if (typeof exp !== 'number') return undefined
    return { expiresAt: exp * 1000, issuedAt: typeof iat === 'number' ? iat * 1000 : undefined }
  } catch {
    return undefined
  }
}

/**
 * Milliseconds from `now` until a stream opened with `token` should be reopened with a fresh one: a fifth of its
 * lifetime before it expires, at most a minute before. Undefined for a token that does not expire.
 */
export function refreshDelay (token: string, now: number): number | undefined {
  const times = tokenTimes(token)
  if (times === undefined) return undefined
  const lifetime = times.expiresAt - (times.issuedAt ?? now)
  const margin = Math.min(MAX_MARGIN_MS, Math.max(0, lifetime) / 5)
  return Math.max(MIN_DELAY_MS, times.expiresAt - margin - now)
}
