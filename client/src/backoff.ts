export interface Backoff {
  initialMs: number
  maxMs: number
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 1_000, maxMs: 30_000 }

/**
 * The wait before attempt `failures + 1`: doubling from `initialMs` up to `maxMs`, jittered over 0.5-1.5 times
 * that, so pages cut off together (an instance died, a balancer answered 502) do not come back together.
 */
export function backoffDelay (failures: number, backoff: Backoff, random: () => number = Math.random): number {
  const base = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.max(0, failures - 1))
  return Math.round(base * (0.5 + random()))
}
