import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { test } from 'node:test'
import { mintToken, parseTtl } from '../src/cli/token.js'
import { build, publish } from './helper.js'
import { openStream } from './helpers/sse-client.js'
import { SECRET } from './helpers/tokens.js'

const claimsOf = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1] as string, 'base64url').toString()) as Record<string, any>
const headerOf = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[0] as string, 'base64url').toString()) as Record<string, any>

test('--ttl takes seconds or a unit, and refuses zero or nonsense', () => {
  assert.equal(parseTtl('90'), 90)
  assert.equal(parseTtl('90s'), 90)
  assert.equal(parseTtl('5m'), 300)
  assert.equal(parseTtl('1h'), 3600)
  assert.equal(parseTtl('2d'), 172_800)
  for (const bad of ['0', '0h', 'soon', '-1h', '1.5h', '1w', '']) assert.throws(() => parseTtl(bad), /expected a positive number/, bad)
})

test('a minted token carries the claims asked for, HS256, with iat and exp; the server accepts it', async (t) => {
  const { url } = await build(t, { HERALD_JWT_SECRET: SECRET, HERALD_PRIVATE_TOPICS: 'private/**' })
  const minted = mintToken({ HERALD_JWT_SECRET: SECRET }, ['--publish', 'chat/*', '--publish', 'alerts', '--subscribe', 'private/**', '--ttl', '5m', '--subject', 'me'])
  assert.equal(headerOf(minted).alg, 'HS256')
  const claims = claimsOf(minted)
  assert.deepEqual(claims.herald, { publish: ['chat/*', 'alerts'], subscribe: ['private/**'] })
  assert.equal(claims.sub, 'me')
  assert.equal(claims.exp - claims.iat, 300)
  const auth = { authorization: `Bearer ${minted}` }
  assert.equal((await publish(url, { topic: 'chat/a', data: 1 }, auth)).status, 202)
  assert.equal((await publish(url, { topic: 'alerts', data: 1 }, auth)).status, 202)
  const refused = await publish(url, { topic: 'other', data: 1 }, auth)
  assert.equal(refused.status, 403)
  assert.match(refused.body.message, /topic "other"/)
  const stream = await openStream(`${url}/v1/stream?topic=private/x&access_token=${minted}`)
  stream.close()
  assert.equal(stream.status, 200)
})

test('issuer and audience follow HERALD_JWT_ISSUER and HERALD_JWT_AUDIENCE', async (t) => {
  const env = { HERALD_JWT_SECRET: SECRET, HERALD_JWT_ISSUER: 'https://issuer.test', HERALD_JWT_AUDIENCE: 'herald' }
  const { url } = await build(t, env)
  const minted = mintToken(env, ['--publish', '**'])
  assert.equal(claimsOf(minted).iss, 'https://issuer.test')
  assert.equal(claimsOf(minted).aud, 'herald')
  assert.equal((await publish(url, { topic: 'a', data: 1 }, { authorization: `Bearer ${minted}` })).status, 202)
  const plain = mintToken({ HERALD_JWT_SECRET: SECRET }, ['--publish', '**'])
  assert.equal((await publish(url, { topic: 'a', data: 1 }, { authorization: `Bearer ${plain}` })).status, 401, 'a token without iss/aud is refused')
})

test('no secret, a short secret, a bad pattern or an unknown flag is an error, not a token', () => {
  assert.throws(() => mintToken({}, []), /set HERALD_JWT_SECRET/)
  assert.throws(() => mintToken({ HERALD_JWT_SECRET: 'short' }, []), /at least 32 characters/)
  assert.throws(() => mintToken({ HERALD_JWT_SECRET: SECRET }, ['--publish', 'a/**/b']), /pattern "a\/\*\*\/b"/)
  assert.throws(() => mintToken({ HERALD_JWT_SECRET: SECRET }, ['--admin']), /Unknown option/)
})

test('`npm run -s token` prints just the token on stdout, as the README uses it; errors go to stderr with status 2', () => {
  const env = { ...process.env, HERALD_JWT_SECRET: SECRET }
  const run = spawnSync('npm', ['run', '-s', 'token', '--', '--publish', 'chat/*', '--subscribe', 'chat/*', '--ttl', '1h'], { env, encoding: 'utf8', timeout: 30_000 })
  assert.equal(run.status, 0, run.stderr)
  assert.match(run.stdout, /^[\w-]+\.[\w-]+\.[\w-]+\n$/)
  assert.deepEqual(claimsOf(run.stdout.trim()).herald, { publish: ['chat/*'], subscribe: ['chat/*'] })

  const missing = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/token.ts', '--publish', 'chat/*'], { env: { ...process.env, HERALD_JWT_SECRET: '' }, encoding: 'utf8', timeout: 30_000 })
  assert.equal(missing.status, 2)
  assert.equal(missing.stdout, '')
  assert.match(missing.stderr, /herald token: set HERALD_JWT_SECRET/)
})
