/**
 * Turns schema validation errors into one sentence a client can act on, using each schema's `description`
 * ("body/topic must be a topic name: 1-256 characters from …") instead of the raw keyword message.
 */

export interface SchemaError {
  keyword: string
  schemaPath: string
  instancePath: string
  params: Record<string, unknown>
  message?: string
}

type SchemaNode = Record<string, unknown>

export function describeSchemaErrors (errors: readonly SchemaError[], part: string, root: SchemaNode): string {
  const missing = errors.find((error) => error.keyword === 'required')
  if (missing !== undefined) {
    const names = (missing.params.requiredProperties ?? missing.params.missingProperty ?? []) as string[] | string
    return `${part}${missing.instancePath} must have ${list([names].flat())}`
  }
  const unknown = errors.find((error) => error.keyword === 'additionalProperties')
  if (unknown !== undefined) {
    const names = [unknown.params.additionalProperties ?? []].flat() as string[]
    const allowed = Object.keys((resolve(root, unknown.schemaPath)?.properties ?? {}) as SchemaNode)
    return `${part}${unknown.instancePath} has unknown ${list(names)}; allowed: ${allowed.join(', ')}`
  }

  const specific = errors.filter((error) => error.keyword !== 'anyOf' && error.keyword !== 'boolean')
  const depth = (error: SchemaError) => error.instancePath.split('/').length
  const deepest = Math.max(...specific.map(depth))
  const atDeepest = specific.filter((error) => depth(error) === deepest)
  // A wrong value in the right shape (a pattern, a length) says more than "not the other branch's type".
  const chosen = atDeepest.find((error) => error.keyword !== 'type') ?? atDeepest[0] ?? errors[0]
  if (chosen === undefined) return `${part} is invalid`
  const schema = chosen.keyword === 'type' && atDeepest.length > 1
    ? resolve(root, enclosingUnion(errors, chosen) ?? chosen.schemaPath)
    : resolve(root, chosen.schemaPath)
  const description = typeof schema?.description === 'string' ? schema.description : undefined
  return `${part}${chosen.instancePath} ${description === undefined ? chosen.message ?? 'is invalid' : `must be ${description}`}`
}

function enclosingUnion (errors: readonly SchemaError[], chosen: SchemaError): string | undefined {
  return errors.find((error) => error.keyword === 'anyOf' && error.instancePath === chosen.instancePath)?.schemaPath
}

function resolve (root: SchemaNode, schemaPath: string): SchemaNode | undefined {
  let node: unknown = root
  for (const segment of schemaPath.replace(/^#\/?/, '').split('/').filter(Boolean)) {
    if (node === null || typeof node !== 'object') return undefined
    node = (node as SchemaNode)[segment.replace(/~1/g, '/').replace(/~0/g, '~')]
  }
  return node !== null && typeof node === 'object' ? node as SchemaNode : undefined
}

function list (names: string[]): string {
  return names.map((name) => `'${name}'`).join(', ')
}
