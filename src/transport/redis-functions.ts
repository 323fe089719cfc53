import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The library's version: part of its name, so two Herald versions side by side each call their own. */
export const LIBRARY_VERSION = 'v1'

export interface FunctionSettings {
  prefix: string
  historySize: number
  historyRetentionMs: number
  idempotencyTtlMs: number
}

export interface FunctionLibrary {
  /** The library's name, from the prefix and the version: `herald_v1` for the prefix `herald:`. */
  name: string
  publish: string
  read: string
  /** The code to FUNCTION LOAD: redis/herald.lua with this deployment's settings. */
  code: string
}

/**
 * The keys a publish to a topic declares: its state, its history and, with an idempotency key, the key's record.
 * Every key the call touches is declared, so a Cluster that is moving the topic's slot routes the call to the node
 * holding all of them, or answers TRYAGAIN while they are split between two.
 */
export function publishKeys (prefix: string, topic: string, idempotencyKey?: string): string[] {
  const key = `${prefix}{${topic}}`
  return idempotencyKey === undefined || idempotencyKey === '' ? [`${key}:m`, `${key}:h`] : [`${key}:m`, `${key}:h`, `${key}:i:${idempotencyKey}`]
}

/** The keys a read of a topic's history declares: its state and its history. */
export function readKeys (prefix: string, topic: string): string[] {
  const key = `${prefix}{${topic}}`
  return [`${key}:m`, `${key}:h`]
}

/** redis/herald.lua, found from this module in the source tree (src/transport) and in the build (dist/src/transport). */
function libraryPath (): string {
  let directory = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const candidate = join(directory, 'redis', 'herald.lua')
    if (existsSync(candidate)) return candidate
    const parent = dirname(directory)
    if (parent === directory) throw new Error('redis/herald.lua not found above ' + dirname(fileURLToPath(import.meta.url)))
    directory = parent
  }
}

const luaString = (text: string): string => `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`

/** The library as this deployment loads it: the settings written into its first lines, the name from the prefix. */
export function functionLibrary (settings: FunctionSettings, source = readFileSync(libraryPath(), 'utf8')): FunctionLibrary {
  const name = `${settings.prefix.replace(/[^A-Za-z0-9_]/g, '_')}${LIBRARY_VERSION}`
  const replacements: Array<[RegExp, string]> = [
    [/^#!lua name=\S+$/m, `#!lua name=${name}`],
    [/^local NAME = .*$/m, `local NAME = ${luaString(name)}`],
    [/^local PREFIX = .*$/m, `local PREFIX = ${luaString(settings.prefix)}`],
    [/^local HISTORY_SIZE = .*$/m, `local HISTORY_SIZE = ${settings.historySize}`],
    [/^local RETENTION_MS = .*$/m, `local RETENTION_MS = ${settings.historyRetentionMs}`],
    [/^local IDEMPOTENCY_MS = .*$/m, `local IDEMPOTENCY_MS = ${settings.idempotencyTtlMs}`]
  ]
  let code = source
  for (const [line, value] of replacements) {
    if (!line.test(code)) throw new Error(`redis/herald.lua: no line matches ${String(line)}`)
    code = code.replace(line, () => value)
  }
  return { name, publish: `${name}_publish`, read: `${name}_read`, code }
}
