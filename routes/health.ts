import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'

const HealthReply = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('degraded')]),
  broker: Type.Union([Type.Literal('memory'), Type.Literal('redis')]),
  redis: Type.Optional(Type.Object({ publisher: Type.String(), subscriber: Type.String() })),
  subscriptions: Type.Integer()
})

/**
 * GET /health: 200 while the process serves. `status` is `degraded` while Redis is unreachable: streams stay
 * open and publishes answer 503, so a balancer should keep sending subscribers here.
 */
const health: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/health', { schema: { summary: 'Health', response: { 200: HealthReply } } }, async () => {
    return { ...fastify.hub.health(), subscriptions: fastify.hub.streamCount }
  })
}

export default health
