import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { DataTooDeepError } from '../src/errors.js'
import { MAX_DATA_DEPTH, nestsDeeperThan } from '../src/json-depth.js'
import { ErrorReply, PublishBody, PublishHeaders, PublishReply } from '../src/schemas.js'
import { validationFormatter } from './validation.js'
import { uniqueTopics } from '../src/topics.js'
import type { PublishInput } from '../src/transport/transport.js'

/** POST /v1/events: publish one JSON event to one or more topics. */
const events: FastifyPluginAsyncTypebox = async (fastify) => {
  const perMinute = fastify.config.rateLimitPerMinute
  const rateLimit = perMinute === 0
    ? undefined
    : {
        max: perMinute,
        timeWindow: '1 minute',
        // A verified subject has its own budget; no token, a bad one, or open mode counts against the address.
        keyGenerator: (request: FastifyRequest) => {
          const subject = fastify.authorizer.verifiedSubject(fastify.bearerToken(request))
          return subject === undefined ? `ip:${request.ip}` : `sub:${subject}`
        }
      }

  fastify.post('/v1/events', {
    config: rateLimit === undefined ? { publish: true } : { publish: true, rateLimit },
    onResponse: (_request, reply, done) => {
      fastify.metrics.publishDuration(reply.elapsedTime / 1000)
      done()
    },
    schema: {
      summary: 'Publish an event',
      headers: PublishHeaders,
      body: PublishBody,
      response: { 202: PublishReply, '4xx': ErrorReply, '5xx': ErrorReply }
    },
    schemaErrorFormatter: validationFormatter({ body: PublishBody, headers: PublishHeaders })
  }, async (request, reply) => {
    const body = request.body
    if (nestsDeeperThan(body.data, MAX_DATA_DEPTH)) {
      throw new DataTooDeepError(MAX_DATA_DEPTH)
    }
    const topics = uniqueTopics(typeof body.topic === 'string' ? [body.topic] : body.topic)
    fastify.authorizer.authorizePublish(fastify.bearerToken(request), topics)
    const input: PublishInput = {
      topics,
      // Encoded once here; every subscriber on every instance gets these same bytes.
      data: JSON.stringify(body.data)
    }
    if (body.type !== undefined) input.type = body.type
    if (body.retry !== undefined) input.retry = body.retry
    const idempotencyKey = body.idempotencyKey ?? request.headers['idempotency-key']
    if (idempotencyKey !== undefined) input.idempotencyKey = idempotencyKey

    const published = await fastify.hub.publish(input)
    fastify.metrics.published(published.duplicate ? 'duplicate' : 'stored')
    return reply.code(202).send(published)
  })
}

export default events
