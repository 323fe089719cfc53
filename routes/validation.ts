import type { FastifySchemaValidationError } from 'fastify/types/schema.js'
import { describeSchemaErrors, type SchemaError } from '../src/schema-errors.js'

/** A route's schemaErrorFormatter that explains errors with the schemas' own descriptions. */
export function validationFormatter (schemas: Record<string, object>) {
  return (errors: FastifySchemaValidationError[], part: string): Error => {
    const root = schemas[part] as Record<string, unknown> | undefined
    const message = root === undefined
      ? `${part}${errors[0]?.instancePath ?? ''} ${errors[0]?.message ?? 'is invalid'}`
      : describeSchemaErrors(errors as unknown as SchemaError[], part, root)
    return Object.assign(new Error(message), { statusCode: 400, code: 'FST_ERR_VALIDATION', validation: errors, validationContext: part })
  }
}
