/**
 * Mints a development token with the configured HS256 secret:
 *   npm run token -- --publish 'chat/*' --subscribe 'chat/*' --ttl 1h
 * Prints the JWT on stdout. Issuer and audience follow HERALD_JWT_ISSUER / HERALD_JWT_AUDIENCE.
 */
import { createSigner } from 'fast-jwt'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { patternProblem } from '../topic-patterns.js'

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 }

export function parseTtl (text: string): number {
  const match = /^(\d+)([smhd]?)$/.exec(text)
  const seconds = match === null ? 0 : Number(match[1]) * (UNIT_SECONDS[match[2] || 's'] ?? 1)
  if (seconds <= 0) throw new Error(`--ttl ${JSON.stringify(text)}: expected a positive number with an optional unit s, m, h or d (e.g. 1h)`)
  return seconds
}

export function mintToken (env: NodeJS.ProcessEnv, argv: string[]): string {
  const { values } = parseArgs({
    args: argv,
    options: {
      publish: { type: 'string', multiple: true, default: [] },
      subscribe: { type: 'string', multiple: true, default: [] },
      ttl: { type: 'string', default: '1h' },
      subject: { type: 'string', default: 'herald-token-cli' }
    },
    strict: true
  })
  const secret = env.HERALD_JWT_SECRET
  if (secret === undefined || secret.length < 32) throw new Error('set HERALD_JWT_SECRET (at least 32 characters) to the secret Herald runs with')
  for (const pattern of [...values.publish, ...values.subscribe]) {
    const problem = patternProblem(pattern)
    if (problem !== undefined) throw new Error(`pattern ${JSON.stringify(pattern)}: ${problem}`)
  }
  const sign = createSigner({
    key: secret,
    algorithm: 'HS256',
    expiresIn: parseTtl(values.ttl) * 1000,
    ...(env.HERALD_JWT_ISSUER === undefined ? {} : { iss: env.HERALD_JWT_ISSUER }),
    ...(env.HERALD_JWT_AUDIENCE === undefined ? {} : { aud: env.HERALD_JWT_AUDIENCE })
  })
  return sign({ sub: values.subject, herald: { publish: values.publish, subscribe: values.subscribe } })
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    process.stdout.write(mintToken(process.env, process.argv.slice(2)) + '\n')
  } catch (error) {
    process.stderr.write(`herald token: ${(error as Error).message}\n`)
    process.exit(2)
  }
}
