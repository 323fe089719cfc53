/**
 * Rewrites the configuration table in README.md from the settings in src/config.ts:
 *   npm run docs:config
 * test/config.test.ts fails while the README's table differs from the one this writes.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { configTable } from '../config.js'

const START = '<!-- config:start -->'
const END = '<!-- config:end -->'

/** The README with the text between the config markers replaced by the generated table. */
export function withConfigTable (readme: string): string {
  const start = readme.indexOf(START)
  const end = readme.indexOf(END)
  if (start === -1 || end < start) throw new Error(`README.md needs ${START} and ${END} around the configuration table`)
  return `${readme.slice(0, start + START.length)}\n${configTable()}\n${readme.slice(end)}`
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const path = new URL('../../README.md', import.meta.url)
  const readme = readFileSync(path, 'utf8')
  const updated = withConfigTable(readme)
  if (updated !== readme) writeFileSync(path, updated)
  process.stdout.write(updated === readme ? 'README.md: configuration table already up to date\n' : 'README.md: configuration table rewritten\n')
}
