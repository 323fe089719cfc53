import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { test } from 'node:test'
import { ConfigError, loadConfig } from '../src/config.js'

test('defaults start an embedded broker on loopback', () => {
  const config = loadConfig({})
  assert.equal(config.host, '127.0.0.1')
  assert.equal(config.port, 8080)
  assert.equal(config.redisUrl, undefined)
  assert.equal(config.heartbeatMs, 15_000)
  assert.equal(config.redisPrefix, 'herald:')
  assert.equal(config.maxQueueBytes, 1_048_576)
})

test('values are parsed and typed', () => {
  const config = loadConfig({ PORT: '9000', REDIS_URL: 'redis://127.0.0.1:6379', HERALD_HEARTBEAT_MS: '20000', LOG_LEVEL: 'debug', HERALD_REDIS_PREFIX: 'x:' })
  assert.equal(config.port, 9000)
  assert.equal(config.redisUrl, 'redis://127.0.0.1:6379')
  assert.equal(config.heartbeatMs, 20_000)
  assert.equal(config.logLevel, 'debug')
  assert.equal(config.redisPrefix, 'x:')
})

test('every bad value is one line naming the variable and what it expects', () => {
  try {
    loadConfig({ PORT: 'eighty', REDIS_URL: 'http://x', HERALD_HEARTBEAT_MS: '3.5', LOG_LEVEL: 'loud', HERALD_MAX_BODY_BYTES: '-1' })
    assert.fail('expected a ConfigError')
  } catch (error) {
    assert.ok(error instanceof ConfigError)
    assert.deepEqual(error.problems, [
      'PORT="eighty": expected a TCP port, 0-65535',
      'REDIS_URL="http://x": expected a redis:// or rediss:// URL',
      'LOG_LEVEL="loud": expected one of fatal, error, warn, info, debug, trace, silent',
      'HERALD_HEARTBEAT_MS="3.5": expected milliseconds between heartbeat comments, at least 50',
      'HERALD_MAX_BODY_BYTES="-1": expected the largest publish body in bytes, at least 1024'
    ])
  }
})

test('the server exits non-zero with the message when the configuration is bad', () => {
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env: { ...process.env, PORT: 'nope' }, encoding: 'utf8', timeout: 30_000
  })
  assert.equal(run.status, 2)
  assert.match(run.stderr, /PORT="nope": expected a TCP port/)
})
