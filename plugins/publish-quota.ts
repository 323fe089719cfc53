import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { PublishOverLimitError, RateLimitedError } from '../src/errors.js'
import { createPublishQuota, type QuotaTake } from '../src/publish-quota.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** HERALD_RATE_LIMIT_PER_MINUTE: topic-events per minute per token subject (or address), on this instance. */
    publishQuota: PublishQuotaGuard
  }
}

export interface PublishQuotaGuard {
  /** Topic-events per minute per key; 0 = no limit (every take is allowed). */
  readonly perMinute: number
  /** The budget a request counts against: its verified token subject, or its address without one. */
  keyOf: (request: FastifyRequest) => string
  /** Takes `weight` topic-events from `key`'s budget, or takes nothing and says when to retry. */
  take: (key: string, weight: number) => QuotaTake
  /**
   * A publish route's hooks. onRequest charges 1, so a spent budget is refused before the body is read and
   * every request costs at least 1; preValidation charges the rest of `weightOf(body)` (the body is parsed but not
   * yet validated: count cheaply, and count repeats once). Either throws a 429 HERALD_RATE_LIMITED, with
   * Retry-After when waiting helps.
   */
  routeHooks: (weightOf: (body: unknown) => number) => {
    onRequest: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
    preValidation: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
  }
}

/**
 * The publish rate limit, counted in topic-events. A verified subject has its own budget; no token, a bad one,
 * or open mode counts against the client's address (X-Forwarded-For only from HERALD_TRUST_PROXY).
 */
export default fp(async (fastify) => {
  const perMinute = fastify.config.rateLimitPerMinute
  const quota = createPublishQuota(perMinute, 60_000)
  const keyOf = (request: FastifyRequest): string => {
    const subject = fastify.authorizer.verifiedSubject(fastify.bearerToken(request))
    return subject === undefined ? `ip:${request.ip}` : `sub:${subject}`
  }
  const charge = (request: FastifyRequest, reply: FastifyReply, weight: number): void => {
    const taken = quota.take(keyOf(request), weight)
    if (taken.allowed) return
    const seconds = Math.max(1, Math.ceil(taken.retryAfterMs / 1000))
    reply.header('retry-after', String(seconds))
    throw new RateLimitedError(perMinute, 'minute', seconds)
  }
  const guard: PublishQuotaGuard = {
    perMinute,
    keyOf,
    take: (key, weight) => quota.take(key, weight),
    routeHooks: (weightOf) => ({
      async onRequest (request, reply) {
        if (perMinute > 0) charge(request, reply, 1)
      },
      async preValidation (request, reply) {
        if (perMinute === 0) return
        const weight = weightOf(request.body)
        if (weight > perMinute) throw new PublishOverLimitError(weight, perMinute)
        if (weight > 1) charge(request, reply, weight - 1)
      }
    })
  }
  fastify.decorate('publishQuota', guard)
}, { name: 'publish-quota', dependencies: ['config', 'auth'] })
