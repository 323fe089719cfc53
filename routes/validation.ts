import { errorCodes } from 'fastify'
import type { FastifySchemaValidationError } from 'fastify/types/schema.js'
import { describeSchemaErrors, type SchemaError } from '../src/schema-errors.js'

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
