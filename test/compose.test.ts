import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'

function compose (...args: string[]): { status: number | null, stdout: string, stderr: string } {
  const run = spawnSync('docker-compose', ['-f', 'docker-compose.yml', ...args], { encoding: 'utf8', env: { ...process.env, HERALD_JWT_SECRET: '' } })
  if (run.error !== undefined) throw new Error(`docker-compose is not installed: apt-get install -y docker-compose (${run.error.message})`)
  return run
}

test('docker-compose.yml is valid compose (docker-compose config -q)', () => {
  const run = compose('config', '-q')
  assert.equal(run.status, 0, run.stderr)
})

test('compose runs Redis with AOF and a healthcheck, and Herald on it once Redis is healthy', () => {
  const run = compose('config')
  assert.equal(run.status, 0, run.stderr)
  const config = run.stdout
  assert.deepEqual(compose('config', '--services').stdout.trim().split('\n').sort(), ['herald', 'redis'])
  assert.match(config, /image: redis:7/)
  assert.match(config, /- --appendonly\n\s+- "yes"/)
  assert.match(config, /healthcheck:\n\s+interval: 5s/)
  assert.match(config, /condition: service_healthy/)
  assert.match(config, /REDIS_URL: redis:\/\/redis:6379/)
  assert.match(config, /- 127\.0\.0\.1:8080:8080\/tcp/, 'published on the host loopback only')
})

test('the Dockerfile builds in stages and runs as a non-root user', () => {
  const dockerfile = readFileSync('Dockerfile', 'utf8')
  assert.equal(dockerfile.match(/^FROM /gm)?.length, 2, 'a build stage and a runtime stage')
  assert.match(dockerfile, /^USER node$/m)
  assert.match(dockerfile, /npm prune --omit=dev/)
  assert.match(dockerfile, /^CMD \["node", "dist\/src\/server.js"\]$/m)
})
