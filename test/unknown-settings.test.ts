// HERALD_* variables that name no setting: a warning at start naming the closest real one.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { test } from 'node:test'
import { EnvSchema } from '../src/config.js'
import { closestSetting, editDistance, unknownSettings } from '../src/unknown-settings.js'
import { until } from './helper.js'
import { stopChild } from './helpers/child-process.js'
import { freePort } from './helpers/redis-server.js'

/** The settings table's names, as src/server.ts passes them: whatever settings there are now. */
const KNOWN = Object.keys(EnvSchema.properties)

test('edit distance counts insertions, deletions and substitutions', () => {
  assert.equal(editDistance('', ''), 0)
  assert.equal(editDistance('abc', ''), 3)
  assert.equal(editDistance('', 'abc'), 3)
  assert.equal(editDistance('kitten', 'sitting'), 3)
  assert.equal(editDistance('HERALD_JWT_SECRT', 'HERALD_JWT_SECRET'), 1)
  assert.equal(editDistance('flaw', 'lawn'), 2)
})

test('an unknown HERALD_* variable gets the closest real setting; known ones and other variables pass silently', () => {
  assert.deepEqual(unknownSettings({ HERALD_JWT_SECRET: 'x', HERALD_MAX_CONNECTIONS: '5', PATH: '/bin', REDIS_URL: 'redis://r', HOME: '/' }, KNOWN), [])
  const found = unknownSettings({ HERALD_MAXCONNECTIONS: '5', HERALD_JWT_SECRT: 'x', HERALD_HISTORY_SIZ: '9', PATH: '/bin' }, KNOWN)
  assert.deepEqual(found.map(({ variable, suggestion }) => [variable, suggestion]), [
    ['HERALD_HISTORY_SIZ', 'HERALD_HISTORY_SIZE'],
    ['HERALD_JWT_SECRT', 'HERALD_JWT_SECRET'],
    ['HERALD_MAXCONNECTIONS', 'HERALD_MAX_CONNECTIONS']
  ])
  assert.equal(found[1]?.message, 'HERALD_JWT_SECRT is not a Herald setting and is ignored; did you mean HERALD_JWT_SECRET?')
  // A setting without the prefix, spelt with it.
  assert.equal(closestSetting('HERALD_REDIS_URL', KNOWN), 'REDIS_URL')
  assert.equal(closestSetting('HERALD_LOG_LEVEL', KNOWN), 'LOG_LEVEL')
  // Nothing close: no guess, a pointer to the table.
  const [far] = unknownSettings({ HERALD_FOO: '1' }, KNOWN)
  assert.equal(far?.suggestion, undefined)
  assert.match(far?.message ?? '', /HERALD_FOO is not a Herald setting and is ignored; see the configuration table/)
})

test('the suggestions follow the settings table it is given, not a list of its own', () => {
  assert.equal(closestSetting('HERALD_REDIS_SENTINELZ', [...KNOWN, 'HERALD_REDIS_SENTINELS']), 'HERALD_REDIS_SENTINELS')
  assert.equal(closestSetting('HERALD_MAX_STREAMS', ['HERALD_MAX_STREAMS_PER_ADDRESS', 'HERALD_MAX_STREAMZ']), 'HERALD_MAX_STREAMZ')
  for (const name of KNOWN) assert.deepEqual(unknownSettings({ [name]: '1' }, KNOWN), [], `${name} is known`)
})

test('Herald started with a misspelt setting warns once, naming the closest setting', { timeout: 90_000 }, async (t) => {
  // Its own process, as a host runs it (the warning is src/server.ts's, at start). Waited for by its log line, not
  // by /health: on a loaded machine tsx alone can take 20 s to start it.
  const port = await freePort()
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env: { ...process.env, HOST: '127.0.0.1', PORT: String(port), HERALD_METRICS_PORT: 'off', LOG_LEVEL: 'warn', HERALD_MAX_STREAMS: '5' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  t.after(async () => await stopChild(child, ''))
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  await until(() => {
    if (child.exitCode !== null) throw new Error(`herald exited with ${child.exitCode}: ${output}`)
    return /"msg":"HERALD_MAX_STREAMS is not a Herald setting[^\n]*\n/.test(output)
  }, 80_000, 'the warning')
  const expected = closestSetting('HERALD_MAX_STREAMS', KNOWN)
  assert.ok(expected !== undefined)
  const warnings = output.split('\n').filter((line) => line.includes('is not a Herald setting'))
  assert.equal(warnings.length, 1, output)
  const line = JSON.parse(warnings[0] as string) as { level: number, variable: string, suggestion: string, msg: string }
  assert.equal(line.level, 40)
  assert.equal(line.variable, 'HERALD_MAX_STREAMS')
  assert.equal(line.suggestion, expected)
  assert.equal(line.msg, `HERALD_MAX_STREAMS is not a Herald setting and is ignored; did you mean ${expected}?`)
})
