// Herald's pino logger, captured through a destination: what a request leaves in the log.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { loadConfig } from '../src/config.js'
import { createLogger, createServer } from '../src/server.js'
import { build, until } from './helper.js'
import { openStream } from './helpers/sse-client.js'

async function logged (t: test.TestContext, level: string): Promise<{ app: Awaited<ReturnType<typeof createServer>>, lines: Array<Record<string, any>> }> {
  const config = loadConfig({ LOG_LEVEL: level, PORT: '0', HERALD_METRICS_PORT: 'off' })
  const lines: Array<Record<string, any>> = []
  const app = await createServer(config, createLogger(config, { destination: { write: (line: string) => { lines.push(JSON.parse(line)) } } }))
  t.after(() => app.close())
  return { app, lines }
}

/** The lines a request logged, by the id Fastify gives it. */
const linesOf = (lines: Array<Record<string, any>>, reqId: string): Array<Record<string, any>> => lines.filter((line) => line.reqId === reqId)

test('a request logs one line at info: method, redacted url, status and response time, never a subscriber token', async (t) => {
  const { app, lines } = await logged(t, 'info')
  const response = await app.inject('/v1/stats?access_token=secret.token.value')
  assert.equal(response.statusCode, 200)

  const requestLines = lines.filter((line) => line.reqId !== undefined)
  assert.equal(requestLines.length, 1, JSON.stringify(requestLines))
  const [line] = requestLines
  assert.equal(line?.msg, 'request completed')
  assert.equal(line?.level, 30)
  assert.deepEqual(line?.req, { method: 'GET', url: '/v1/stats?access_token=[redacted]', remoteAddress: '127.0.0.1' })
  assert.deepEqual(line?.res, { statusCode: 200 })
  assert.equal(typeof line?.responseTime, 'number')
  assert.equal(lines.some((logged) => JSON.stringify(logged).includes('secret.token.value')), false)
  // A refused request too: its line, plus the error handler's `request rejected` saying why.
  assert.equal((await app.inject({ url: '/v1/nowhere' })).statusCode, 404)
  const missing = lines.filter((logged) => logged.req?.url === '/v1/nowhere')
  assert.deepEqual(missing.map((logged) => [logged.msg, logged.res?.statusCode]), [['request completed', 404]])
})

test('health probes log at debug: nothing at info, one line each at debug', async (t) => {
  const quiet = await logged(t, 'info')
  for (const path of ['/health', '/health/live', '/health/ready']) assert.equal((await quiet.app.inject(path)).statusCode, 200)
  assert.deepEqual(quiet.lines.filter((line) => line.reqId !== undefined), [])

  const verbose = await logged(t, 'debug')
  for (const path of ['/health', '/health/live', '/health/ready']) assert.equal((await verbose.app.inject(path)).statusCode, 200)
  const probes = verbose.lines.filter((line) => line.reqId !== undefined)
  assert.deepEqual(probes.map((line) => [line.level, line.msg, line.req?.url, line.res?.statusCode]), [
    [20, 'request completed', '/health', 200],
    [20, 'request completed', '/health/live', 200],
    [20, 'request completed', '/health/ready', 200]
  ])
})

test('an event stream logs as it opens and as it closes, not as a completed request', async (t) => {
  const { url, log, app } = await build(t, { LOG_LEVEL: 'info' })
  const stream = await openStream(`${url}/v1/stream?topic=logged`)
  await until(() => app.hub.streamCount === 1, 5_000, 'the stream to open')
  const opened = log.find((line) => line.msg === 'incoming request')
  assert.equal(opened?.req?.url, '/v1/stream?topic=logged')
  stream.close()
  await until(() => log.some((line) => line.msg === 'stream closed'), 5_000, 'the stream to close')
  const lines = linesOf(log, String(opened?.reqId))
  assert.deepEqual(lines.map((line) => line.msg), ['incoming request', 'stream closed'])
})
