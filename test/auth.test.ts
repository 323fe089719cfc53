import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createHmac } from 'node:crypto'
import { test } from 'node:test'
import { insecureBindRefusal, isLoopback, loadConfig } from '../src/config.js'
import { mintToken, parseTtl } from '../src/cli/token.js'
import { redactTokens } from '../src/server.js'
import { build, publish, until } from './helper.js'
import { openStream, payloads } from './helpers/sse-client.js'
import { keyPair, SECRET, token, unsignedToken } from './helpers/tokens.js'

const secured = { HERALD_JWT_SECRET: SECRET, HERALD_PRIVATE_TOPICS: 'private/**' }

type Kind = 'none' | 'bad signature' | 'expired' | 'alg none' | 'wrong claims' | 'right claims'
type Source = 'header' | 'cookie' | 'query'

function tokenOf (kind: Kind): string | undefined {
  switch (kind) {
    case 'none': return undefined
    case 'bad signature': return token({ publish: ['chat/*'], subscribe: ['private/**'], key: 'another-secret-that-is-long-enough-0123' })
    case 'expired': return token({ publish: ['chat/*'], subscribe: ['private/**'], expiresIn: -10 })
    case 'alg none': return unsignedToken()
    case 'wrong claims': return token({ publish: ['other/*'], subscribe: ['private/elsewhere'] })
    case 'right claims': return token({ publish: ['chat/*'], subscribe: ['private/**'] })
  }
}

function carry (value: string | undefined, source: Source): { headers: Record<string, string>, query: string } {
  if (value === undefined) return { headers: {}, query: '' }
  if (source === 'header') return { headers: { authorization: `Bearer ${value}` }, query: '' }
  if (source === 'cookie') return { headers: { cookie: `herald_token=${value}` }, query: '' }
  return { headers: {}, query: `&access_token=${encodeURIComponent(value)}` }
}

const kinds: Kind[] = ['none', 'bad signature', 'expired', 'alg none', 'wrong claims', 'right claims']
const sources: Source[] = ['header', 'cookie', 'query']
const refused = (kind: Kind) => kind === 'right claims' ? 'allowed' : kind === 'wrong claims' ? 403 : 401

test('authorization table: {token} x {publish, public stream, private stream} x {header, cookie, query}', async (t) => {
  const { url } = await build(t, secured)
  const watcher = await openStream(`${url}/v1/stream?topic=chat/room&topic=private/room`, { authorization: `Bearer ${token({ subscribe: ['private/**'] })}` })
  t.after(watcher.close)
  let accepted = 0
  const rows: string[] = []
  for (const kind of kinds) {
    for (const source of sources) {
      const { headers, query } = carry(tokenOf(kind), source)

      // Publishing takes its token from the Authorization header only: a backend can always set it.
      const expectedPublish = source === 'header' ? (refused(kind) === 'allowed' ? 202 : refused(kind)) : 401
      const published = await publish(url, { topic: 'chat/room', data: `${kind} via ${source}` }, headers, query.replace('&', '?'))
      if (published.status === 202) accepted++
      else assert.match(published.body.message, expectedPublish === 403 ? /may not publish to topic "chat\/room"/ : /token/)
      rows.push(`publish ${kind} ${source} -> ${published.status}`)
      assert.equal(published.status, expectedPublish, `publish, ${kind}, ${source}`)

      const publicStream = await openStream(`${url}/v1/stream?topic=chat/room${query}`, headers)
      publicStream.close()
      assert.equal(publicStream.status, 200, `public stream, ${kind}, ${source}`)

      const privateStream = await openStream(`${url}/v1/stream?topic=private/room${query}`, headers)
      privateStream.close()
      const expectedPrivate = refused(kind) === 'allowed' ? 200 : refused(kind)
      rows.push(`private stream ${kind} ${source} -> ${privateStream.status}`)
      assert.equal(privateStream.status, expectedPrivate, `private stream, ${kind}, ${source}`)
      if (expectedPrivate !== 200) {
        assert.match(String(privateStream.headers['content-type']), /application\/json/)
        assert.doesNotMatch(privateStream.text(), /^(data|id|retry):/m, 'no stream byte before the refusal')
        if (expectedPrivate === 401) assert.equal(privateStream.headers['www-authenticate'], 'Bearer')
        else assert.match(privateStream.text(), /may not subscribe to topic \\"private\/room\\"/)
      }
    }
  }
  const sentinel = await publish(url, { topic: 'private/room', data: 'end' }, { authorization: `Bearer ${token({ publish: ['private/**'] })}` })
  assert.equal(sentinel.status, 202)
  await watcher.waitForEvents(accepted + 1)
  assert.equal(accepted, 1, rows.join('\n'))
  assert.deepEqual(payloads(watcher.events), ['right claims via header', 'end'], 'only accepted publishes were fanned out')
})

test('a token that expires while streaming ends the stream within a second of exp', { timeout: 20_000 }, async (t) => {
  const { url } = await build(t, secured)
  const short = token({ subscribe: ['private/**'], expiresIn: 2 })
  const exp = (JSON.parse(Buffer.from(short.split('.')[1] as string, 'base64url').toString()) as { exp: number }).exp * 1000
  const client = await openStream(`${url}/v1/stream?topic=private/x&access_token=${short}`)
  t.after(client.close)
  assert.equal(client.status, 200)
  await until(() => client.ended(), 6_000, 'the stream to end')
  const late = Date.now() - exp
  t.diagnostic(`stream ended ${late} ms after exp`)
  assert.ok(late >= -50 && late <= 1_000, `ended ${late} ms after exp`)
  const again = await openStream(`${url}/v1/stream?topic=private/x&access_token=${short}`)
  again.close()
  assert.equal(again.status, 401, 'the expired token cannot reopen it')
})

test('a token valid for months keeps its stream open (timers cap at 24.8 days)', async (t) => {
  const { url } = await build(t, secured)
  const longLived = token({ subscribe: ['private/**'], publish: ['private/**'], expiresIn: 60 * 86_400 })
  const client = await openStream(`${url}/v1/stream?topic=private/long&access_token=${longLived}`)
  t.after(client.close)
  await new Promise((resolve) => setTimeout(resolve, 200))
  assert.equal(client.ended(), false)
  await publish(url, { topic: 'private/long', data: 'still here' }, { authorization: `Bearer ${longLived}` })
  assert.deepEqual(payloads(await client.waitForEvents(1)), ['still here'])
})

test('RS256 and ES256 public keys: right tokens pass; HS256 signed with the public key (algorithm confusion) fails', async (t) => {
  for (const type of ['rsa', 'ec'] as const) {
    const { publicKey, privateKey } = keyPair(type)
    const { url } = await build(t, { HERALD_JWT_PUBLIC_KEY: publicKey, HERALD_JWT_ISSUER: 'https://issuer.test', HERALD_JWT_AUDIENCE: 'herald' })
    const algorithm = type === 'rsa' ? 'RS256' : 'ES256'
    const good = token({ publish: ['a'], key: privateKey, algorithm, iss: 'https://issuer.test', aud: 'herald' })
    assert.equal((await publish(url, { topic: 'a', data: 1 }, { authorization: `Bearer ${good}` })).status, 202)
    const wrongIssuer = token({ publish: ['a'], key: privateKey, algorithm, iss: 'https://evil.test', aud: 'herald' })
    assert.equal((await publish(url, { topic: 'a', data: 1 }, { authorization: `Bearer ${wrongIssuer}` })).status, 401)
    const wrongAudience = token({ publish: ['a'], key: privateKey, algorithm, iss: 'https://issuer.test', aud: 'other' })
    assert.equal((await publish(url, { topic: 'a', data: 1 }, { authorization: `Bearer ${wrongAudience}` })).status, 401)
    const notYet = token({ publish: ['a'], key: privateKey, algorithm, iss: 'https://issuer.test', aud: 'herald', notBefore: 600 })
    assert.equal((await publish(url, { topic: 'a', data: 1 }, { authorization: `Bearer ${notYet}` })).status, 401)

    const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
    const body = `${encode({ alg: 'HS256', typ: 'JWT' })}.${encode({ exp: Math.floor(Date.now() / 1000) + 60, iss: 'https://issuer.test', aud: 'herald', herald: { publish: ['**'] } })}`
    const forged = `${body}.${createHmac('sha256', publicKey).update(body).digest('base64url')}`
    const confused = await publish(url, { topic: 'a', data: 1 }, { authorization: `Bearer ${forged}` })
    assert.equal(confused.status, 401)
    assert.match(confused.body.message, /algorithm is not accepted/)
  }
})

test('open development mode stays on loopback unless HERALD_ALLOW_INSECURE is set', () => {
  assert.equal(insecureBindRefusal(loadConfig({})), undefined)
  assert.match(insecureBindRefusal(loadConfig({ HOST: '0.0.0.0' })) ?? '', /refusing to listen on 0\.0\.0\.0/)
  assert.equal(insecureBindRefusal(loadConfig({ HOST: '0.0.0.0', HERALD_ALLOW_INSECURE: '1' })), undefined)
  assert.equal(insecureBindRefusal(loadConfig({ HOST: '0.0.0.0', HERALD_JWT_SECRET: SECRET })), undefined)
  for (const host of ['127.0.0.1', '127.1.2.3', '::1', 'localhost']) assert.equal(isLoopback(host), true, host)
  for (const host of ['0.0.0.0', '::', '10.0.0.1', 'example.com']) assert.equal(isLoopback(host), false, host)
  // The process refuses before it binds anything.
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/server.ts'], { env: { ...process.env, HOST: '0.0.0.0', PORT: '0', HERALD_JWT_SECRET: '' }, encoding: 'utf8', timeout: 30_000 })
  assert.equal(run.status, 2)
  assert.match(run.stderr, /open development mode/)
})

test('secrets never appear in configuration errors, and key settings are checked together', () => {
  assert.throws(() => loadConfig({ HERALD_JWT_SECRET: 'short-secret' }), (error: Error) => !error.message.includes('short-secret') && /hidden, 12 characters/.test(error.message))
  assert.throws(() => loadConfig({ HERALD_PRIVATE_TOPICS: 'private/**' }), /need HERALD_JWT_SECRET or HERALD_JWT_PUBLIC_KEY/)
  assert.throws(() => loadConfig({ HERALD_JWT_SECRET: SECRET, HERALD_JWT_PUBLIC_KEY: keyPair('ec').publicKey }), /set one of them/)
  assert.throws(() => loadConfig({ HERALD_JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----' }), /RSA or EC public key/)
})

test('npm run token mints a token the server accepts, with the claims asked for', async (t) => {
  const { url } = await build(t, secured)
  const minted = mintToken({ HERALD_JWT_SECRET: SECRET }, ['--publish', 'chat/*', '--subscribe', 'private/**', '--ttl', '5m'])
  const claims = JSON.parse(Buffer.from(minted.split('.')[1] as string, 'base64url').toString()) as { exp: number, iat: number, herald: unknown }
  assert.deepEqual(claims.herald, { publish: ['chat/*'], subscribe: ['private/**'] })
  assert.equal(claims.exp - claims.iat, 300)
  assert.equal((await publish(url, { topic: 'chat/a', data: 1 }, { authorization: `Bearer ${minted}` })).status, 202)
  assert.equal((await publish(url, { topic: 'other', data: 1 }, { authorization: `Bearer ${minted}` })).status, 403)
  assert.equal(parseTtl('1h'), 3600)
  assert.throws(() => parseTtl('soon'), /expected a number/)
  assert.throws(() => mintToken({}, []), /set HERALD_JWT_SECRET/)
  const cli = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/token.ts', '--publish', 'chat/*'], { env: { ...process.env, HERALD_JWT_SECRET: SECRET }, encoding: 'utf8', timeout: 30_000 })
  assert.equal(cli.status, 0, cli.stderr)
  assert.match(cli.stdout.trim(), /^[\w-]+\.[\w-]+\.[\w-]+$/)
})

test('subscriber tokens in the query string never reach the request log', () => {
  assert.equal(redactTokens('/v1/stream?topic=a&access_token=abc.def.ghi&lastEventId=3'), '/v1/stream?topic=a&access_token=[redacted]&lastEventId=3')
  assert.equal(redactTokens('/v1/stream?access_token=x'), '/v1/stream?access_token=[redacted]')
  assert.equal(redactTokens('/v1/stream?topic=a'), '/v1/stream?topic=a')
})
