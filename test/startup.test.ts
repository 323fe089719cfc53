// Start-up that cannot go on as configured: one log line naming the setting and the address, then exit code 1.
// Each test runs Herald as its own process (`node --import tsx src/server.ts`), as a host or compose would.
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:net'
import { describe, test } from 'node:test'
import { HeraldProcess } from './helpers/herald-process.js'
import { freePort, RedisServer } from './helpers/redis-server.js'

/** Asserts the run ended with exit code 1 and exactly one fatal line, naming `setting` and `address`; returns it. */
function assertOneLine (run: Awaited<ReturnType<typeof HeraldProcess.run>>, setting: string, address: string): string {
  assert.equal(run.code, 1, `exit code 1, got ${run.code} (${run.signal ?? 'no signal'}):\n${run.output}`)
  const lines = run.output.split('\n').filter((line) => line.trim() !== '')
  const fatal = lines.filter((line) => line.startsWith('{') && (JSON.parse(line) as { level: number }).level === 60)
  assert.equal(fatal.length, 1, `one fatal line:\n${run.output}`)
  const entry = JSON.parse(fatal[0] as string) as { msg: string, setting: string, address: string }
  assert.ok(entry.msg.startsWith(`${setting}: `), entry.msg)
  assert.ok(entry.msg.includes(address), `${entry.msg} names ${address}`)
  assert.equal(entry.setting, setting)
  assert.equal(entry.address, address)
  // Nothing else: no stack trace, no Fastify plugin timeout, no uncaught exception.
  assert.deepEqual(lines.filter((line) => !line.startsWith('{')), [], 'only JSON log lines')
  assert.doesNotMatch(run.output, /Plugin did not start|triggerUncaughtException|"stack"/)
  return entry.msg
}

async function occupy (t: { after: (fn: () => Promise<void>) => void }): Promise<number> {
  const port = await freePort()
  const server: Server = createServer()
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  t.after(async () => { await new Promise((resolve) => server.close(resolve)) })
  return port
}

describe('start-up errors', () => {
  for (const [what, password] of [['a wrong password (WRONGPASS)', ':wrong@'], ['no password where one is needed (NOAUTH)', '']] as const) {
    test(`Redis refusing ${what}: one line naming REDIS_URL and the address, exit 1`, { timeout: 180_000 }, async (t) => {
      const redis = await RedisServer.start()
      t.after(async () => await redis.stop())
      const admin = redis.client()
      await admin.config('SET', 'requirepass', 'secret')
      admin.disconnect()
      const address = `127.0.0.1:${redis.port}`
      const run = await HeraldProcess.run({ REDIS_URL: `redis://${password}${address}` })
      const line = assertOneLine(run, 'REDIS_URL', address)
      assert.match(line, /refused the credentials \((WRONGPASS|NOAUTH)/)
      assert.doesNotMatch(line, /secret|wrong/, 'the password is not logged')
      t.diagnostic(`exited ${run.code} after ${run.ms.toFixed(0)} ms (process start included): ${line}`)
    })
  }

  test('an unreachable Redis: one line naming REDIS_URL and the address after the 5 s wait, exit 1', { timeout: 180_000 }, async (t) => {
    const address = `127.0.0.1:${await freePort()}`
    const run = await HeraldProcess.run({ REDIS_URL: `redis://${address}` })
    const line = assertOneLine(run, 'REDIS_URL', address)
    assert.match(line, /cannot reach Redis at .* within 5 s \(connect ECONNREFUSED/)
    const times = run.output.trim().split('\n').map((entry) => (JSON.parse(entry) as { time: number }).time)
    t.diagnostic(`exited ${run.code} after ${run.ms.toFixed(0)} ms (process start included; ${(times.at(-1) ?? 0) - (times[0] ?? 0)} ms from the first log line): ${line}`)
  })

  test('a busy HERALD_METRICS_PORT: one line naming it and the address, exit 1', { timeout: 180_000 }, async (t) => {
    const port = await occupy(t)
    const run = await HeraldProcess.run({ HERALD_METRICS_PORT: String(port) })
    const line = assertOneLine(run, 'HERALD_METRICS_PORT', `127.0.0.1:${port}`)
    assert.match(line, /EADDRINUSE/)
    t.diagnostic(`exited ${run.code} after ${run.ms.toFixed(0)} ms: ${line}`)
  })

  test('a busy PORT: one line naming it and the address, exit 1', { timeout: 180_000 }, async (t) => {
    const port = await occupy(t)
    const run = await HeraldProcess.run({ PORT: String(port) })
    const line = assertOneLine(run, 'PORT', `127.0.0.1:${port}`)
    assert.match(line, /EADDRINUSE/)
    t.diagnostic(`exited ${run.code} after ${run.ms.toFixed(0)} ms: ${line}`)
  })
})
