import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { errorReplies, hostRefused } from '../src/error-replies.js'

const HealthReply = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('degraded')]),
  broker: Type.Union([Type.Literal('memory'), Type.Literal('redis')]),
  redis: Type.Optional(Type.Object({
    publisher: Type.String(),
    subscriber: Type.String(),
    /** The round trip of a PING in ms, or null when Redis did not answer within the command timeout. */
    pingMs: Type.Union([Type.Integer(), Type.Null()])
  })),
  subscriptions: Type.Integer()
}, { description: 'the process serves; `degraded` while Redis is unreachable or does not answer a PING' })

/**
 * GET /health: 200 while the process serves. `status` is `degraded` while Redis is unreachable or does not
 * answer a PING (a stopped Redis keeps its connections open): streams stay open and publishes answer 503, so a
 * balancer should keep sending subscribers here.
 */
const health: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/health', {
    schema: {
      summary: 'Health',
      description: 'Always 200 while the process serves; `status` says whether Redis answers. Open streams stay up ' +
        'while it is `degraded`, so a balancer should keep routing subscribers here.',
      tags: ['health'],
      response: {
        200: HealthReply,
        ...errorReplies([hostRefused])
      }
    }
  }, async () => {
    const { status, broker, redis } = fastify.hub.health()
    const answer = await fastify.redisAnswers()
    const subscriptions = fastify.hub.streamCount
    if (redis === undefined || answer === undefined) return { status, broker, subscriptions }
    return {
      status: answer.ok ? status : 'degraded' as const,
      broker,
      redis: { ...redis, pingMs: answer.latencyMs ?? null },
      subscriptions
    }
  })
}

export default health
