import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

let version: string | undefined

/** Herald's version, from package.json beside src/ (or beside dist/ when built); read once. */
export function packageVersion (): string {
  if (version !== undefined) return version
  const here = fileURLToPath(new URL('.', import.meta.url))
  const file = new URL(here.endsWith('/dist/src/') ? '../../package.json' : '../package.json', import.meta.url)
  version = (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version
  return version
}
