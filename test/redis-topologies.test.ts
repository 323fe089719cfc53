import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { Redis } from 'ioredis'
import { loadConfig } from '../src/config.js'
import { startupProblem } from '../src/redis-clients.js'
import { clusterEnabled, keySlot, parseSentinelUrl, runIdOf } from '../src/redis-topology.js'
import { build, publish, until } from './helper.js'
import { docCommand, docEnv } from './helpers/doc-examples.js'
import { RedisServer } from './helpers/redis-server.js'
import { redisTlsFiles, TlsRedisServer } from './helpers/redis-tls.js'
import { openStream, payloads } from './helpers/sse-client.js'

/** Runs Herald as a process that must exit at start (within 30 s): its exit code and output. */
async function startHerald (env: Record<string, string>): Promise<{ code: number | null, output: string, ms: number }> {
  const started = Date.now()
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env: { ...process.env, HOST: '127.0.0.1', PORT: '0', HERALD_METRICS_PORT: 'off', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  clearTimeout(timer)
  return { code, output: output.replace(/\s+/g, ' '), ms: Date.now() - started }
}

test('redis+sentinel:// URLs: sentinels, master name and credentials, or a clear refusal', () => {
  assert.deepEqual(parseSentinelUrl('redis+sentinel://10.0.0.1:26379,[::1]:26380,sentinel.internal:26381/herald-master'), {
    sentinels: [{ host: '10.0.0.1', port: 26379 }, { host: '::1', port: 26380 }, { host: 'sentinel.internal', port: 26381 }],
    masterName: 'herald-master'
  })
  assert.deepEqual(parseSentinelUrl('redis+sentinel://herald:p%40ss@h:1/m'), { sentinels: [{ host: 'h', port: 1 }], masterName: 'm', username: 'herald', password: 'p@ss' })
  assert.throws(() => parseSentinelUrl('redis+sentinel://h:1'), /master name/)
  assert.throws(() => parseSentinelUrl('redis+sentinel://h/m'), /host:port for each sentinel, got "h"/)
  assert.throws(() => loadConfig({ REDIS_URL: 'redis+sentinel://h/m' }), /REDIS_URL="redis\+sentinel:\/\/h\/m": expected host:port/)
  assert.equal(loadConfig({ REDIS_URL: 'redis+sentinel://h:1,h:2/m' }).redisMode, 'auto')
})

test('HERALD_REDIS_MODE and HERALD_REDIS_TLS_*: checked with REDIS_URL at start', () => {
  assert.throws(() => loadConfig({ REDIS_URL: 'redis://h:1', HERALD_REDIS_MODE: 'sentinel' }), /HERALD_REDIS_MODE=sentinel: expected a redis\+sentinel:\/\/ REDIS_URL/)
  assert.throws(() => loadConfig({ REDIS_URL: 'redis+sentinel://h:1/m', HERALD_REDIS_MODE: 'cluster' }), /a redis\+sentinel:\/\/ REDIS_URL is Sentinel mode/)
  assert.throws(() => loadConfig({ HERALD_REDIS_MODE: 'clustered' }), /HERALD_REDIS_MODE="clustered": expected auto/)
  const files = redisTlsFiles()
  try {
    assert.throws(() => loadConfig({ REDIS_URL: 'redis://h:1', HERALD_REDIS_TLS_CA: files.caPath }), /set only with a rediss:\/\/ REDIS_URL/)
    assert.throws(() => loadConfig({ REDIS_URL: 'rediss://h:1', HERALD_REDIS_TLS_CERT: files.clientCertPath }), /HERALD_REDIS_TLS_CERT and HERALD_REDIS_TLS_KEY: set both, or neither/)
    assert.throws(() => loadConfig({ REDIS_URL: 'rediss://h:1', HERALD_REDIS_TLS_CA: join(files.directory, 'missing.pem') }), /HERALD_REDIS_TLS_CA=".*missing.pem": expected a readable PEM file/)
    writeFileSync(join(files.directory, 'junk.pem'), 'not a certificate')
    assert.throws(() => loadConfig({ REDIS_URL: 'rediss://h:1', HERALD_REDIS_TLS_CA: join(files.directory, 'junk.pem') }), /expected a PEM CA certificate/)
    assert.throws(() => loadConfig({ REDIS_URL: 'rediss://h:1', HERALD_REDIS_TLS_CERT: files.clientCertPath, HERALD_REDIS_TLS_KEY: files.serverKeyPath }),
      /HERALD_REDIS_TLS_KEY: the key does not belong to the certificate in HERALD_REDIS_TLS_CERT/)
    const config = loadConfig({ REDIS_URL: 'rediss://h:1', HERALD_REDIS_TLS_CA: files.caPath, HERALD_REDIS_TLS_CERT: files.clientCertPath, HERALD_REDIS_TLS_KEY: files.clientKeyPath })
    assert.match(config.redisTls?.ca ?? '', /BEGIN CERTIFICATE/)
    assert.match(config.redisTls?.key ?? '', /PRIVATE KEY/)
  } finally {
    rmSync(files.directory, { recursive: true, force: true })
  }
})

test('pure helpers: key slots (CRC16 with hash tags), INFO fields, which start-up errors are final', () => {
  assert.equal(keySlot('123456789'), 0x31c3)
  assert.equal(keySlot('{user1000}.following'), keySlot('{user1000}.followers'))
  assert.equal(keySlot('herald:{chat}:seq'), keySlot('chat'))
  assert.equal(keySlot('a{}b'), keySlot('a{}b'))
  assert.notEqual(keySlot('a{}b'), keySlot(''))
  assert.equal(clusterEnabled('# Cluster\r\ncluster_enabled:1\r\n'), true)
  assert.equal(clusterEnabled('# Cluster\r\ncluster_enabled:0\r\n'), false)
  assert.equal(runIdOf('redis_mode:standalone\r\nrun_id:0123abcd\r\ntcp_port:1\r\n'), '0123abcd')
  const unverified = Object.assign(new Error('unable to verify the first certificate'), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' })
  assert.match(startupProblem('rediss://u:secret@h:1', unverified) ?? '', /^REDIS_URL="rediss:\/\/u:…@h:1": Herald does not trust .* set HERALD_REDIS_TLS_CA/)
  assert.equal(startupProblem('redis://h:1', Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })), undefined)
  const reset = Object.assign(new Error('write ECONNRESET'), { code: 'ECONNRESET' })
  assert.match(startupProblem('rediss://h:1', reset) ?? '', /reset the TLS connection .*set HERALD_REDIS_TLS_CERT/)
  assert.equal(startupProblem('rediss://h:1', reset, true), undefined, 'with a client certificate a reset is not about one')
  assert.equal(startupProblem('redis://h:1', reset), undefined)
  assert.match(startupProblem('redis://h:1', new Error('WRONGPASS invalid username-password pair')) ?? '', /Redis refused Herald: WRONGPASS/)
})

test('standalone: the docs example; a Redis connection of the plain kind; redisRunId is the server\'s and changes when it restarts', async (t) => {
  const redis = await RedisServer.start()
  t.after(() => redis.stop())
  const herald = await build(t, docEnv('standalone', { 6379: redis.port }))
  assert.equal(herald.app.redisTopology.mode, 'standalone')
  const { publisher, subscriber } = herald.app.redis
  assert.ok(publisher instanceof Redis && subscriber instanceof Redis)
  assert.ok(publisher.options.sentinels == null)
  const probe = redis.client()
  t.after(() => probe.disconnect())
  const before = runIdOf(await probe.info('server'))
  await until(() => herald.app.redisRunId() !== undefined, 5_000, 'the run_id is known')
  assert.equal(herald.app.redisRunId(), before)
  assert.equal(herald.app.redisRunId('any key'), before)
  probe.disconnect()
  await redis.kill()
  await redis.startProcess()
  await until(() => herald.app.redisRunId() !== undefined && herald.app.redisRunId() !== before, 15_000, 'a new run_id after the restart')
  const again = redis.client()
  t.after(() => again.disconnect())
  assert.equal(herald.app.redisRunId(), runIdOf(await again.info('server')))
})

test('TLS: the docs example with a CA and a client certificate, against redis-server --tls-auth-clients yes; a wrong CA or no client certificate fail start-up at once', async (t) => {
  const files = redisTlsFiles()
  const server = await TlsRedisServer.start(files)
  t.after(() => server.stop())
  const example = docEnv('tls', { 6380: server.port })
  const env: Record<string, string> = { ...example, HERALD_REDIS_TLS_CA: files.caPath, HERALD_REDIS_TLS_CERT: files.clientCertPath, HERALD_REDIS_TLS_KEY: files.clientKeyPath }
  assert.deepEqual(Object.keys(example).sort(), Object.keys(env).sort())
  const herald = await build(t, env)
  assert.equal(herald.app.redisTopology.mode, 'standalone')
  assert.equal((await publish(herald.url, { topic: 'tls', data: 1 })).status, 202)
  assert.equal((await fetch(`${herald.url}/health/ready`)).status, 200)
  await until(() => herald.app.redisRunId() !== undefined, 5_000, 'the run_id over TLS')

  const wrongCa = await startHerald({ ...env, HERALD_REDIS_TLS_CA: files.otherCaPath })
  assert.notEqual(wrongCa.code, 0)
  assert.match(wrongCa.output, /REDIS_URL=\\?"rediss:\/\/127\.0\.0\.1:\d+\\?": Herald does not trust the Redis server's TLS certificate .*set HERALD_REDIS_TLS_CA/)
  console.log(`# wrong CA: the process exited ${wrongCa.ms} ms after it was started`)
  const noClientCertificate = await startHerald({ REDIS_URL: env.REDIS_URL ?? '', HERALD_REDIS_TLS_CA: files.caPath })
  assert.notEqual(noClientCertificate.code, 0)
  assert.match(noClientCertificate.output, /the Redis server (refused the TLS handshake|reset the TLS connection) .*set HERALD_REDIS_TLS_CERT and HERALD_REDIS_TLS_KEY/)
  console.log(`# no client certificate: the process exited ${noClientCertificate.ms} ms after it was started`)
})

test('ACL: the docs\' ACL SETUSER on a real redis-server; Herald runs as that user: start, publish, live stream, resume from history', async (t) => {
  const redis = await RedisServer.start()
  t.after(() => redis.stop())
  const admin = redis.client()
  t.after(() => admin.disconnect())
  const [cli, ...command] = docCommand('acl')
  assert.equal(cli, 'redis-cli')
  assert.equal(await admin.call(command[0] ?? '', ...command.slice(1)), 'OK')
  // The user may do nothing outside its prefix.
  const env = docEnv('acl-url', { 6379: redis.port })
  const user = new Redis(env.REDIS_URL ?? '', { maxRetriesPerRequest: 0 })
  t.after(() => user.disconnect())
  await assert.rejects(user.get('other:key'), /NOPERM/)
  await assert.rejects(user.call('FLUSHALL'), /NOPERM/)
  user.disconnect()

  const herald = await build(t, env)
  const first = await publish(herald.url, { topic: 'acl', data: 1 })
  assert.equal(first.status, 202, JSON.stringify(first.body))
  const live = await openStream(`${herald.url}/v1/stream?topic=acl`)
  t.after(() => live.close())
  const second = await publish(herald.url, { topic: 'acl', data: 2 })
  assert.equal(second.status, 202)
  assert.deepEqual(payloads(await live.waitForEvents(1)), [2])
  const resumed = await openStream(`${herald.url}/v1/stream?topic=acl`, { 'last-event-id': first.body.id })
  t.after(() => resumed.close())
  assert.deepEqual(payloads(await resumed.waitForEvents(1)), [2])
  assert.equal((await fetch(`${herald.url}/health/ready`)).status, 200)
  assert.equal(herald.app.redisRunId(), runIdOf(await admin.info('server')))
  const clients = String(await admin.call('CLIENT', 'LIST'))
  assert.match(clients, new RegExp(`name=herald-${process.pid}-publisher .*user=herald`))
  assert.match(clients, new RegExp(`name=herald-${process.pid}-subscriber .*user=herald`))
})
