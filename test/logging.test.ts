// Herald's pino logger, captured through a destination: what a request leaves in the log.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { loadConfig } from '../src/config.js'
import { createLogger, createServer } from '../src/server.js'

test('request logs carry method, redacted url and status, never a subscriber token', async (t) => {
  const config = loadConfig({ LOG_LEVEL: 'info', PORT: '0' })
  const lines: Array<Record<string, any>> = []
  const app = await createServer(config, createLogger(config, { destination: { write: (line: string) => { lines.push(JSON.parse(line)) } } }))
  t.after(() => app.close())

  const response = await app.inject('/health?access_token=secret.token.value')
  assert.equal(response.statusCode, 200)

  const incoming = lines.find((line) => line.msg === 'incoming request')
  assert.deepEqual(incoming?.req, { method: 'GET', url: '/health?access_token=[redacted]', remoteAddress: '127.0.0.1' })
  const completed = lines.find((line) => line.msg === 'request completed')
  assert.deepEqual(completed?.res, { statusCode: 200 })
  assert.equal(lines.some((line) => JSON.stringify(line).includes('secret.token.value')), false)
})
