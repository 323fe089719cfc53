import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { withConfigTable } from '../src/cli/config-table.js'
import { ConfigError, loadConfig } from '../src/config.js'
import { testCertificate } from './helpers/tls.js'

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
      'REDIS_URL="http://x": expected a redis:// or rediss:// URL (any node of a Redis Cluster will do), or redis+sentinel://[user:password@]host:port,host:port/<master name>; see docs/redis.md',
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

test('each variable maps to its Config field: flags, lists, * for any origin, trusted proxies', () => {
  const config = loadConfig({
    HERALD_ALLOW_INSECURE: '1',
    HERALD_CORS_ORIGINS: 'https://a.example, https://b.example',
    HERALD_TRUST_PROXY: '10.0.0.0/8, 127.0.0.1',
    HERALD_RATE_LIMIT_PER_MINUTE: '60'
  })
  assert.equal(config.allowInsecure, true)
  assert.deepEqual(config.corsOrigins, ['https://a.example', 'https://b.example'])
  assert.equal(config.trustProxy, '10.0.0.0/8, 127.0.0.1')
  assert.equal(config.rateLimitPerMinute, 60)
  assert.equal(config.jwt, undefined)

  const defaults = loadConfig({})
  assert.equal(defaults.allowInsecure, false)
  assert.deepEqual(defaults.privateTopics, [])
  assert.equal(defaults.publicSubscribe, true)
  assert.deepEqual(defaults.corsOrigins, [])
  assert.equal(defaults.trustProxy, false)

  assert.equal(loadConfig({ HERALD_ALLOW_INSECURE: 'true' }).allowInsecure, true)
  assert.equal(loadConfig({ HERALD_ALLOW_INSECURE: '0' }).allowInsecure, false)
  assert.equal(loadConfig({ HERALD_CORS_ORIGINS: '*' }).corsOrigins, '*')
  assert.equal(loadConfig({ HERALD_TRUST_PROXY: 'true' }).trustProxy, true)
  assert.equal(loadConfig({ HERALD_TRUST_PROXY: 'false' }).trustProxy, false)

  const secured = loadConfig({ HERALD_JWT_SECRET: 'x'.repeat(32), HERALD_PRIVATE_TOPICS: ' private/**, users/* ,', HERALD_PUBLIC_SUBSCRIBE: '0', HERALD_JWT_ISSUER: 'me' })
  assert.deepEqual(secured.privateTopics, ['private/**', 'users/*'])
  assert.equal(secured.publicSubscribe, false)
  assert.deepEqual(secured.jwt, { key: 'x'.repeat(32), algorithms: ['HS256'], issuer: 'me' })
})

test('HERALD_ALLOWED_HOSTS: host names without a port, lowercased, or *; HERALD_TRUST_PROXY takes proxy-addr range names', () => {
  assert.deepEqual(loadConfig({}).allowedHosts, [])
  assert.deepEqual(loadConfig({ HERALD_ALLOWED_HOSTS: 'Push.Example.com, herald-1,10.0.0.7,[fd00::1]' }).allowedHosts, ['push.example.com', 'herald-1', '10.0.0.7', '[fd00::1]'])
  assert.equal(loadConfig({ HERALD_ALLOWED_HOSTS: '*' }).allowedHosts, '*')
  for (const bad of ['push.example.com:8080', 'http://push.example.com', 'a b', '*.example.com', 'fd00::1', 'a,,b']) {
    assert.throws(() => loadConfig({ HERALD_ALLOWED_HOSTS: bad }), (error: unknown) =>
      error instanceof ConfigError && error.problems.length === 1 && error.problems[0]?.startsWith(`HERALD_ALLOWED_HOSTS=${JSON.stringify(bad)}: expected comma-separated host names (no port)`) === true, bad)
  }
  assert.equal(loadConfig({ HERALD_TRUST_PROXY: 'uniquelocal, loopback' }).trustProxy, 'uniquelocal, loopback')
  assert.throws(() => loadConfig({ HERALD_TRUST_PROXY: 'privatenets' }), /HERALD_TRUST_PROXY="privatenets"/)
})

test('an empty variable counts as unset', () => {
  const config = loadConfig({ PORT: '', HOST: '', HERALD_JWT_SECRET: '', HERALD_HEARTBEAT_MS: '' })
  assert.equal(config.port, 8080)
  assert.equal(config.host, '127.0.0.1')
  assert.equal(config.jwt, undefined)
  assert.equal(config.heartbeatMs, 15_000)
})

test('a JWT secret needs at least 32 characters: 31 is refused naming HERALD_JWT_SECRET, 32 is accepted', () => {
  assert.throws(() => loadConfig({ HERALD_JWT_SECRET: 'x'.repeat(31) }), (error: unknown) =>
    error instanceof ConfigError &&
    error.problems.length === 1 &&
    error.problems[0] === 'HERALD_JWT_SECRET=(hidden, 31 characters): expected an HS256 secret of at least 32 characters')
  assert.deepEqual(loadConfig({ HERALD_JWT_SECRET: 'x'.repeat(32) }).jwt, { key: 'x'.repeat(32), algorithms: ['HS256'] })
})

test('every bad variable is reported together, not just the first', () => {
  assert.throws(() => loadConfig({ HERALD_ALLOW_INSECURE: 'yes', HERALD_CORS_ORIGINS: 'example.com', HERALD_TRUST_PROXY: 'everyone', HERALD_COOKIE_NAME: 'a b' }), (error: unknown) =>
    error instanceof ConfigError && error.problems.length === 4 &&
    error.problems.every((problem, index) => problem.startsWith(['HERALD_ALLOW_INSECURE=', 'HERALD_COOKIE_NAME=', 'HERALD_CORS_ORIGINS=', 'HERALD_TRUST_PROXY='][index] as string)))
})

test('cross-variable checks: a bad private topic pattern is named', () => {
  assert.throws(() => loadConfig({ HERALD_JWT_SECRET: 'x'.repeat(32), HERALD_PRIVATE_TOPICS: 'a/**/b' }), /HERALD_PRIVATE_TOPICS="a\/\*\*\/b": pattern "a\/\*\*\/b": /)
})

test('HERALD_TLS_CERT and HERALD_TLS_KEY: both or neither, readable PEM files, and a key that belongs to the certificate', (t) => {
  const { certPath, keyPath } = testCertificate()
  const tls = loadConfig({ HERALD_TLS_CERT: certPath, HERALD_TLS_KEY: keyPath }).tls
  assert.equal(tls?.cert, readFileSync(certPath, 'utf8'))
  assert.equal(tls?.key, readFileSync(keyPath, 'utf8'))
  assert.equal(loadConfig({}).tls, undefined)
  const dir = mkdtempSync(join(tmpdir(), 'herald-config-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const otherKey = join(dir, 'other.key')
  writeFileSync(otherKey, generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }))
  const problems = (env: Record<string, string>): string[] => {
    try {
      loadConfig(env)
    } catch (error) {
      if (error instanceof ConfigError) return error.problems
      throw error
    }
    return []
  }
  assert.deepEqual(problems({ HERALD_TLS_CERT: certPath }), ['HERALD_TLS_CERT and HERALD_TLS_KEY: set both, or neither'])
  assert.deepEqual(problems({ HERALD_TLS_CERT: '/nowhere.pem', HERALD_TLS_KEY: keyPath }), ['HERALD_TLS_CERT="/nowhere.pem": expected a readable PEM file'])
  assert.deepEqual(problems({ HERALD_TLS_CERT: keyPath, HERALD_TLS_KEY: keyPath }), [`HERALD_TLS_CERT=${JSON.stringify(keyPath)}: expected a PEM certificate`])
  assert.deepEqual(problems({ HERALD_TLS_CERT: certPath, HERALD_TLS_KEY: certPath }), [`HERALD_TLS_KEY=${JSON.stringify(certPath)}: expected an unencrypted PEM private key`])
  assert.deepEqual(problems({ HERALD_TLS_CERT: certPath, HERALD_TLS_KEY: otherKey }), ['HERALD_TLS_KEY: the key does not belong to the certificate in HERALD_TLS_CERT'])
})

test('docs/configuration.md\'s table is the one the settings generate', () => {
  const page = readFileSync(new URL('../docs/configuration.md', import.meta.url), 'utf8')
  const generated = withConfigTable(page)
  const lines = (text: string) => new Set(text.split('\n'))
  const missing = [...lines(generated)].filter((line) => !lines(page).has(line)).map((line) => `  missing: ${line}`)
  const stale = [...lines(page)].filter((line) => !lines(generated).has(line)).map((line) => `  stale:   ${line}`)
  assert.equal(page, generated, ['docs/configuration.md\'s configuration table is out of date: run npm run docs:config', ...missing, ...stale].join('\n'))
})
