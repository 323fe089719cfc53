import { errorCodes } from 'fastify'
import type { FastifySchemaValidationError } from 'fastify/types/schema.js'
import { describeSchemaErrors, type SchemaError } from '../src/schema-errors.js'
import { namedTopicCount } from '../src/topics.js'

/** A route's schemaErrorFormatter that explains errors with the schemas' own descriptions. */
export function validationFormatter (schemas: Record<string, object>) {
  return (errors: FastifySchemaValidationError[], part: string): Error => {
    const root = schemas[part] as Record<string, unknown> | undefined
    const message = root === undefined
      ? `${part}${errors[0]?.instancePath ?? ''} ${errors[0]?.message ?? 'is invalid'}`
      : describeSchemaErrors(errors as unknown as SchemaError[], part, root)
    // Fastify's own validation error (400, FST_ERR_VALIDATION); Fastify attaches the errors and the part itself.
    return new errorCodes.FST_ERR_VALIDATION(message)
  }
}

/**
 * A preValidation check that refuses a body naming more than `max` topics before the schema checks each name:
 * the schema would check every name of a 6,000-name body before it reports the count, which costs more than
 * refusing a body that is too large. The same 400 and code as a schema error, naming the limit.
 */
export function topicCountLimit (max: number) {
  return async (request: { body: unknown }): Promise<void> => {
    const body = request.body
    const count = typeof body === 'object' && body !== null ? namedTopicCount((body as { topic?: unknown }).topic) : 0
    if (count > max) throw new errorCodes.FST_ERR_VALIDATION(`body/topic must name at most ${max} topics; this one names ${count}`)
  }
}
