import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { ErrorReply, PublishBody, PublishHeaders, PublishReply } from '../src/schemas.js'
import { validationFormatter } from './validation.js'
import { uniqueTopics } from '../src/topics.js'
import type { PublishInput } from '../src/broker/types.js'

/** POST /v1/events: publish one JSON event to one or more topics. */
const events: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.post('/v1/events', {
    schema: {
      summary: 'Publish an event',
      headers: PublishHeaders,
      body: PublishBody,
      response: { 202: PublishReply, '4xx': ErrorReply, '5xx': ErrorReply }
    },
    schemaErrorFormatter: validationFormatter({ body: PublishBody, headers: PublishHeaders })
  }, async (request, reply) => {
    const body = request.body
    const input: PublishInput = {
      topics: uniqueTopics(typeof body.topic === 'string' ? [body.topic] : body.topic),
      // Encoded once here; every subscriber on every instance gets these same bytes.
      data: JSON.stringify(body.data)
    }
    if (body.type !== undefined) input.type = body.type
    if (body.retry !== undefined) input.retry = body.retry
    const idempotencyKey = body.idempotencyKey ?? request.headers['idempotency-key']
    if (idempotencyKey !== undefined) input.idempotencyKey = idempotencyKey

    const published = await fastify.broker.publish(input)
    return reply.code(202).send(published)
  })
}

export default events
