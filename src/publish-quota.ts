/**
 * A per-key budget of topic-events per window: an event published to N topics costs N, because each topic's copy
 * is stored and sent on its own. Fixed windows, like @fastify/rate-limit's (which counts requests and cannot
 * weigh them): a key's window starts with its first take. Counted in this process only, so each instance
 * grants its own budget.
 */

export type QuotaTake =
  | { allowed: true, remaining: number }
  /** `retryAfterMs` is when the key's window ends: a take that fits the limit succeeds then. */
  | { allowed: false, remaining: number, retryAfterMs: number }

export interface PublishQuota {
  /** Topic-events per window per key; 0 = no limit. */
  readonly limit: number
  readonly windowMs: number
  /**
   * Takes `weight` topic-events from the key's budget, or takes nothing and says when to retry. A weight above
   * the limit never fits.
   */
  take: (key: string, weight: number, now?: number) => QuotaTake
}

interface Window { startedAt: number, used: number }

/**
 * `maxKeys` bounds memory against a flood of addresses: past it, the windows that started longest ago (which
 * are also the ones nearest their end) are forgotten first.
 */
export function createPublishQuota (limit: number, windowMs: number, maxKeys = 10_000): PublishQuota {
  // Insertion order is start order: a key's entry is re-inserted when its window restarts.
  const windows = new Map<string, Window>()
  return {
    limit,
    windowMs,
    take (key, weight, now = Date.now()) {
      if (limit === 0) return { allowed: true, remaining: Infinity }
      let window = windows.get(key)
      if (window === undefined || now - window.startedAt >= windowMs) {
        windows.delete(key)
        window = { startedAt: now, used: 0 }
        windows.set(key, window)
        while (windows.size > maxKeys) windows.delete(windows.keys().next().value as string)
      }
      if (window.used + weight > limit) {
        return { allowed: false, remaining: limit - window.used, retryAfterMs: window.startedAt + windowMs - now }
      }
      window.used += weight
      return { allowed: true, remaining: limit - window.used }
    }
  }
}
