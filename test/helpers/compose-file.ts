import { readFileSync } from 'node:fs'
import { parse } from 'yaml'

export interface ComposeService {
  image?: string
  build?: unknown
  command?: string[]
  environment?: Record<string, string>
  healthcheck?: { test: string[] }
  depends_on?: Record<string, { condition: string }>
  ports?: string[]
  volumes?: string[]
  profiles?: string[]
}

/**
 * docker-compose.yml as Compose reads it with nothing set in the environment: YAML merge keys applied and each
 * `${NAME:-default}` replaced by its default. Any other interpolation is an error, so nothing is guessed.
 * (test/compose.test.ts checks the same file with docker-compose itself.)
 */
export function composeFile (path = 'docker-compose.yml'): { services: Record<string, ComposeService>, volumes?: Record<string, unknown> } {
  const text = readFileSync(path, 'utf8').replace(/\$\{(\w+)(:-([^}]*))?\}/g, (whole, name: string, withDefault?: string, fallback?: string) => {
    if (withDefault === undefined) throw new Error(`${path}: ${whole} has no default`)
    return fallback ?? ''
  })
  if (/\$[^$]/.test(text.replace(/\$\$/g, ''))) throw new Error(`${path}: an interpolation this reader does not know`)
  const file = parse(text, { merge: true }) as { services: Record<string, ComposeService & { environment?: Record<string, unknown> }>, volumes?: Record<string, unknown> }
  // An empty value (`NAME: ${NAME:-}`) is YAML's null; Compose passes it as an empty variable.
  for (const service of Object.values(file.services)) {
    if (service.environment !== undefined) service.environment = Object.fromEntries(Object.entries(service.environment).map(([name, value]) => [name, value === null ? '' : String(value)]))
  }
  return file
}
