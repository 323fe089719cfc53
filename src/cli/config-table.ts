/**
 * Rewrites the configuration table in docs/configuration.md from the settings in src/config.ts:
 *   npm run docs:config
 * test/config.test.ts fails while that page's table differs from the one this writes.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { configTable } from '../config.js'

const START = '<!-- config:start -->'
const END = '<!-- config:end -->'

/** The page with the text between the config markers replaced by the generated table. */
export function withConfigTable (page: string): string {
  const start = page.indexOf(START)
  const end = page.indexOf(END)
  if (start === -1 || end < start) throw new Error(`docs/configuration.md needs ${START} and ${END} around the configuration table`)
  return `${page.slice(0, start + START.length)}\n${configTable()}\n${page.slice(end)}`
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const path = new URL('../../docs/configuration.md', import.meta.url)
  const page = readFileSync(path, 'utf8')
  const updated = withConfigTable(page)
  if (updated !== page) writeFileSync(path, updated)
  process.stdout.write(updated === page ? 'docs/configuration.md: configuration table already up to date\n' : 'docs/configuration.md: configuration table rewritten\n')
}
