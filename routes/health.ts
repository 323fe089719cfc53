import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'

const HealthReply = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('degraded')]),
  broker: Type.Union([Type.Literal('memory'), Type.Literal('redis')]),
  redis: Type.Optional(Type.Object({
    publisher: Type.String(),
    subscriber: Type.String(),
    /** The round trip of a PING in ms, or null when Redis did not answer within the command timeout. */
    pingMs: Type.Union([Type.Integer(), Type.Null()]),
    /** standalone, sentinel or cluster. */
    mode: Type.String(),
    /** Each master that holds slots (the one server outside a cluster), and its PING. */
    shards: Type.Array(Type.Object({
      node: Type.String({ description: 'host:port' }),
      slots: Type.Integer({ description: 'the slots it holds; 16384 outside a cluster' }),
      pingMs: Type.Union([Type.Integer(), Type.Null()], { description: 'null when it did not answer within the command timeout' }),
      error: Type.Optional(Type.String())
    }))
  })),
  subscriptions: Type.Integer()
}, { description: 'the process serves; `degraded` while Redis (any master that holds slots, on a cluster) is unreachable or does not answer a PING' })

const LiveReply = Type.Object({ status: Type.Literal('ok') }, { description: 'the process serves' })

const ReadyReply = Type.Object({
  status: Type.Union([Type.Literal('ready'), Type.Literal('not-ready')]),
  /** Why not, when not: draining, redis-not-answering, subscriber-not-subscribed. */
  reasons: Type.Array(Type.String())
}, { description: '`ready` (200), or `not-ready` (503) with the reasons: `draining`, `redis-not-answering` (on a cluster: any master that holds slots), `subscriber-not-subscribed`' })

/**
 * GET /health: 200 while the process serves, with a summary. `status` is `degraded` while Redis is unreachable or
 * does not answer a PING (a stopped Redis keeps its connections open): streams stay open and publishes answer 503.
 * GET /health/live: 200 while the process serves (restart it if not).
 * GET /health/ready: 200 when this instance should get traffic: Redis answers a PING within the command timeout,
 * the subscriber connection is subscribed again after any drop, and the instance is not draining; 503 otherwise,
 * with the reasons. Balancers route on it.
 * All three are public, and open development mode's Host check lets them through (plugins/auth.ts): no 4xx.
 */
const health: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/health', {
    schema: {
      summary: 'Health summary',
      operationId: 'health',
      description: 'Always 200 while the process serves; `status` says whether Redis answers. Open streams stay up ' +
        'while it is `degraded`, so a balancer should keep routing subscribers here.',
      tags: ['health'],
      security: [],
      response: { 200: HealthReply }
    }
  }, async () => {
    const { status, broker, redis } = fastify.hub.health()
    const answer = await fastify.redisAnswers()
    const subscriptions = fastify.hub.streamCount
    if (redis === undefined || answer === undefined) return { status, broker, subscriptions }
    return {
      status: answer.ok ? status : 'degraded' as const,
      broker,
      redis: {
        ...redis,
        pingMs: answer.latencyMs ?? null,
        mode: fastify.redisTopology.mode,
        shards: answer.shards.map(({ node, slots, latencyMs, error }) => ({ node, slots, pingMs: latencyMs ?? null, ...(error === undefined ? {} : { error }) }))
      },
      subscriptions
    }
  })

  fastify.get('/health/live', {
    schema: {
      summary: 'Liveness: the process serves',
      operationId: 'liveness',
      description: '200 while the process serves; restart it if not.',
      tags: ['health'],
      security: [],
      response: { 200: LiveReply }
    }
  }, async () => ({ status: 'ok' as const }))

  fastify.get('/health/ready', {
    schema: {
      summary: 'Readiness: this instance should get traffic',
      operationId: 'readiness',
      description: '200 when Redis answers a PING within the command timeout, the subscriber connection is subscribed ' +
        'again after any drop, and the instance is not draining (SIGTERM); 503 otherwise, with the reasons. Balancers route on it.',
      tags: ['health'],
      security: [],
      response: { 200: ReadyReply, 503: ReadyReply }
    }
  }, async (_request, reply) => {
    const reasons: string[] = []
    if (fastify.hub.draining) reasons.push('draining')
    const answer = await fastify.redisAnswers()
    if (answer !== undefined && !answer.ok) reasons.push('redis-not-answering')
    if (fastify.hub.health().status !== 'ok') reasons.push('subscriber-not-subscribed')
    return await reply.code(reasons.length === 0 ? 200 : 503).send({ status: reasons.length === 0 ? 'ready' : 'not-ready', reasons })
  })
}

export default health
