import type { TObject, TSchema } from 'typebox'
import { Compile } from 'typebox/compile'

/** A schema error as Fastify's validators report them (and src/schema-errors.ts describes them). */
export interface ValidationError {
  keyword: string
  schemaPath: string
  instancePath: string
  params: Record<string, unknown>
  message: string
}

/**
 * Compiles a validator for a body whose `key` is an array of items (a batch), which reports the errors of the
 * first bad item only. Listing every error of every item would walk the whole batch a second time, slowly, for a
 * message that names one: a batch is refused for its first bad item at about the cost of checking it.
 */
export function compileBatchValidator (body: TObject, key: string): (value: unknown) => { value: unknown } | { error: ValidationError[] } {
  const whole = Compile(body)
  const itemSchema = (body.properties[key] as TSchema & { items: TSchema }).items
  const item = Compile(itemSchema)
  return (value) => {
    if (whole.Check(value)) return { value }
    const items = (value as Record<string, unknown> | null)?.[key]
    const bad = Array.isArray(items) ? items.findIndex((candidate) => !item.Check(candidate)) : -1
    if (bad < 0) return { error: whole.Errors(value) as ValidationError[] }
    // Paths as the whole body's validator would give them, so the body's schema resolves them.
    return {
      error: (item.Errors((items as unknown[])[bad]) as ValidationError[]).map((error) => ({
        ...error,
        instancePath: `/${key}/${bad}${error.instancePath}`,
        schemaPath: `#/properties/${key}/items${error.schemaPath.slice(1)}`
      }))
    }
  }
}
