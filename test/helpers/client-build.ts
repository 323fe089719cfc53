import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'

const SOURCE = 'client/src'
const OUTPUT = 'client/dist'

/**
 * Builds the browser client (client/ → client/dist/, which Herald serves at /client/) unless the build is newer
 * than every source file: `npm test` then runs on the code as it is, and a single test file can run alone.
 */
export function buildClient (): void {
  const newestSource = Math.max(...readdirSync(SOURCE).map((name) => statSync(join(SOURCE, name)).mtimeMs), statSync('client/tsconfig.json').mtimeMs)
  const built = join(OUTPUT, 'herald-client.js')
  if (existsSync(built) && readdirSync(OUTPUT).every((name) => statSync(join(OUTPUT, name)).mtimeMs >= newestSource)) return
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'client/tsconfig.json'], { stdio: 'inherit' })
}
