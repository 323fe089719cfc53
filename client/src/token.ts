/** The longest a token is refreshed ahead of its expiry. */
const MAX_MARGIN_MS = 60_000
/**
 * The shortest margin, for short-lived tokens (up to half their lifetime): the stream stays open while the provider
 * is asked, so the margin must cover the provider's answer and the new stream's opening.
 */
const MIN_MARGIN_MS = 2_000
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
 * lifetime before it expires, at most a minute and at least 2 s (or half its lifetime) before. Undefined for a
 * token that does not expire.
 */
export function refreshDelay (token: string, now: number): number | undefined {
  const times = tokenTimes(token)
  if (times === undefined) return undefined
  const lifetime = Math.max(0, times.expiresAt - (times.issuedAt ?? now))
  const margin = Math.min(MAX_MARGIN_MS, Math.max(lifetime / 5, Math.min(MIN_MARGIN_MS, lifetime / 2)))
  return Math.max(MIN_DELAY_MS, times.expiresAt - margin - now)
}
