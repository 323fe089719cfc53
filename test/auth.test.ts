import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createHmac } from 'node:crypto'
import { request } from 'node:http'
import { test } from 'node:test'
import { insecureBindRefusal, isLoopback, loadConfig } from '../src/config.js'
import { redactTokens } from '../src/server.js'
import { build, buildFor, publish, PROTOCOLS, until } from './helper.js'
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

for (const protocol of PROTOCOLS) {
  test(`${protocol}: a token that expires while streaming ends the stream within a second of exp`, { timeout: 20_000 }, async (t) => {
    const { url } = await buildFor(t, protocol, secured)
    const short = token({ subscribe: ['private/**'], expiresIn: 2 })
    const exp = (JSON.parse(Buffer.from(short.split('.')[1] as string, 'base64url').toString()) as { exp: number }).exp * 1000
    const client = await openStream(`${url}/v1/stream?topic=private/x&access_token=${short}`)
    t.after(client.close)
    assert.equal(client.status, 200)
    await until(() => client.ended(), 6_000, 'the stream to end')
    const late = Date.now() - exp
    t.diagnostic(`stream ended ${late} ms after exp`)
    assert.ok(late >= -50 && late <= 1_000, `ended ${late} ms after exp`)
    // HTTP/2: ended (END_STREAM), not reset.
    if (protocol === 'h2') await until(() => client.resetCode() === 0, 1_000, 'a clean end of the stream')
    const again = await openStream(`${url}/v1/stream?topic=private/x&access_token=${short}`)
    again.close()
    assert.equal(again.status, 401, 'the expired token cannot reopen it')
  })
}

test('a token valid for months keeps its stream open (timers cap at 24.8 days)', async (t) => {
  const { url } = await build(t, secured)
  const longLived = token({ subscribe: ['private/**'], publish: ['private/**'], expiresIn: 60 * 86_400 })
  const client = await openStream(`${url}/v1/stream?topic=private/long&access_token=${longLived}`)
  t.after(client.close)
  // Time for a wrongly computed expiry (a timer overflow fires at once) to end the stream, which should not happen.
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
    // A configured issuer or audience is required, not only checked when present.
    for (const claims of [{ aud: 'herald' }, { iss: 'https://issuer.test' }, {}]) {
      const partial = token({ publish: ['a'], key: privateKey, algorithm, ...claims })
      const refusedPartial = await publish(url, { topic: 'a', data: 1 }, { authorization: `Bearer ${partial}` })
      assert.equal(refusedPartial.status, 401, JSON.stringify(claims))
      assert.match(refusedPartial.body.message, /issuer or audience/)
    }

    const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
    const body = `${encode({ alg: 'HS256', typ: 'JWT' })}.${encode({ exp: Math.floor(Date.now() / 1000) + 60, iss: 'https://issuer.test', aud: 'herald', herald: { publish: ['**'] } })}`
    const forged = `${body}.${createHmac('sha256', publicKey).update(body).digest('base64url')}`
    const confused = await publish(url, { topic: 'a', data: 1 }, { authorization: `Bearer ${forged}` })
    assert.equal(confused.status, 401)
    assert.match(confused.body.message, /algorithm is not accepted/)
  }
})

test('the algorithm is pinned: HS384/HS512 with the right secret, and RS256 against an HS256 server, are refused', async (t) => {
  const { url } = await build(t, secured)
  const sign = (header: Record<string, unknown>, hash: string) => {
    const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
    const body = `${encode(header)}.${encode({ sub: 'x', exp: Math.floor(Date.now() / 1000) + 60, herald: { publish: ['**'] } })}`
    return `${body}.${createHmac(hash, SECRET).update(body).digest('base64url')}`
  }
  for (const [alg, hash] of [['HS384', 'sha384'], ['HS512', 'sha512']] as const) {
    const refusedAlg = await publish(url, { topic: 'a', data: 1 }, { authorization: `Bearer ${sign({ alg, typ: 'JWT' }, hash)}` })
    assert.equal(refusedAlg.status, 401, alg)
    assert.match(refusedAlg.body.message, /algorithm is not accepted; expected HS256/)
  }
  assert.equal((await publish(url, { topic: 'a', data: 1 }, { authorization: `Bearer ${sign({ alg: 'HS256', typ: 'JWT' }, 'sha256')}` })).status, 202, 'the same token as HS256 passes')
  const rsa = keyPair('rsa')
  const rs256 = token({ publish: ['**'], key: rsa.privateKey, algorithm: 'RS256' })
  assert.equal((await publish(url, { topic: 'a', data: 1 }, { authorization: `Bearer ${rs256}` })).status, 401)
})

test('malformed herald claims are 401, not a crash or an open door', async (t) => {
  const { url } = await build(t, secured)
  const sign = (herald: unknown) => {
    const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
    const body = `${encode({ alg: 'HS256', typ: 'JWT' })}.${encode({ exp: Math.floor(Date.now() / 1000) + 60, herald })}`
    return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`
  }
  for (const herald of [null, '**', ['**'], { publish: '**' }, { publish: [1] }, { publish: ['a/**/b'] }, { publish: ['ch*t'] }, { publish: [''] }]) {
    const refused = await publish(url, { topic: 'a', data: 1 }, { authorization: `Bearer ${sign(herald)}` })
    assert.equal(refused.status, 401, JSON.stringify(herald))
    assert.equal(refused.body.code, 'HERALD_TOKEN_INVALID')
  }
  for (const herald of [undefined, {}, { subscribe: ['**'] }, { publish: [] }]) {
    const empty = await publish(url, { topic: 'a', data: 1 }, { authorization: `Bearer ${sign(herald)}` })
    assert.equal(empty.status, 403, `${JSON.stringify(herald)} grants nothing`)
  }
})

test('one forbidden topic refuses the whole publish or stream, naming it; nothing is published', async (t) => {
  const { url } = await build(t, secured)
  const watcher = await openStream(`${url}/v1/stream?topic=chat/a&topic=chat/b`)
  t.after(watcher.close)
  const publisher = { authorization: `Bearer ${token({ publish: ['chat/a'] })}` }
  const refused = await publish(url, { topic: ['chat/a', 'chat/b'], data: 'both' }, publisher)
  assert.equal(refused.status, 403)
  assert.deepEqual({ code: refused.body.code, error: refused.body.error }, { code: 'HERALD_FORBIDDEN', error: 'Forbidden' })
  assert.match(refused.body.message, /may not publish to topic "chat\/b"/)
  assert.equal((await publish(url, { topic: 'chat/a', data: 'one' }, publisher)).status, 202)
  assert.deepEqual(payloads(await watcher.waitForEvents(1)), ['one'])

  const subscriber = token({ subscribe: ['private/mine'] })
  const stream = await openStream(`${url}/v1/stream?topic=chat/a&topic=private/mine&topic=private/theirs&access_token=${subscriber}`)
  assert.equal(stream.status, 403)
  assert.match(stream.text(), /may not subscribe to topic \\"private\/theirs\\"/)
  assert.doesNotMatch(stream.text(), /^(data|id|retry|event):/m)
})

test('token sources: Authorization first, then the cookie, then access_token; the first one present decides', async (t) => {
  const { url } = await build(t, secured)
  const good = token({ subscribe: ['private/**'] })
  const bad = token({ subscribe: ['private/elsewhere'] })
  const status = async (headers: Record<string, string>, query = '') => {
    const stream = await openStream(`${url}/v1/stream?topic=private/a${query}`, headers)
    stream.close()
    return stream.status
  }
  assert.equal(await status({ authorization: `Bearer ${bad}`, cookie: `herald_token=${good}` }, `&access_token=${good}`), 403, 'the header wins')
  assert.equal(await status({ authorization: `Bearer ${good}`, cookie: `herald_token=${bad}` }, `&access_token=${bad}`), 200, 'the header wins')
  assert.equal(await status({ cookie: `herald_token=${bad}` }, `&access_token=${good}`), 403, 'the cookie comes before the query')
  assert.equal(await status({ cookie: `herald_token=${good}` }, `&access_token=${bad}`), 200, 'the cookie comes before the query')
  assert.equal(await status({ cookie: `other=1; herald_token=${good}; more=2` }), 200, 'the cookie among others')
  assert.equal(await status({ authorization: 'Basic dXNlcjpwYXNz' }, `&access_token=${good}`), 401, 'a non-bearer Authorization header is a bad token, not absent')
  assert.equal(await status({}, `&access_token=${good}&access_token=${good}`), 400, 'one access_token only')
})

test('HERALD_PUBLIC_SUBSCRIBE=false makes every topic private; HERALD_COOKIE_NAME renames the cookie', async (t) => {
  const { url } = await build(t, { HERALD_JWT_SECRET: SECRET, HERALD_PUBLIC_SUBSCRIBE: 'false', HERALD_COOKIE_NAME: 'push_auth' })
  const subscriber = token({ subscribe: ['news/*'] })
  const status = async (path: string, headers: Record<string, string> = {}) => {
    const stream = await openStream(`${url}${path}`, headers)
    stream.close()
    return stream.status
  }
  assert.equal(await status('/v1/stream?topic=news/today'), 401)
  assert.equal(await status('/v1/stream?topic=news/today', { cookie: `push_auth=${subscriber}` }), 200)
  assert.equal(await status('/v1/stream?topic=news/today', { cookie: `herald_token=${subscriber}` }), 401, 'the default cookie name is not read')
  assert.equal(await status('/v1/stream?topic=sport/today', { cookie: `push_auth=${subscriber}` }), 403)
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

test('open development mode refuses requests that name a non-loopback host (DNS rebinding); HERALD_ALLOWED_HOSTS adds names, * or a key lifts it', async (t) => {
  const status = async (url: string, host: string, path = '/v1/stream?topic=a'): Promise<{ status: number, body: string }> => await new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { headers: { host } }, (response) => {
      let body = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => {
        body += chunk
        if (response.statusCode === 200) req.destroy()
      })
      response.on('close', () => resolve({ status: response.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
  const open = await build(t)
  const port = new URL(open.url).port
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, '127.0.0.1']) assert.equal((await status(open.url, host)).status, 200, host)
  for (const host of [`attacker.example:${port}`, 'attacker.example', `10.0.0.1:${port}`, `localhost.attacker.example:${port}`]) {
    const refused = await status(open.url, host)
    assert.equal(refused.status, 403, host)
    assert.equal(JSON.parse(refused.body).code, 'HERALD_HOST_REFUSED')
  }
  const forwarded = await new Promise<number>((resolve, reject) => {
    const req = request(`${open.url}/`, { headers: { host: 'attacker.example', 'x-forwarded-host': '127.0.0.1' } }, (response) => {
      response.resume()
      resolve(response.statusCode ?? 0)
    })
    req.on('error', reject)
    req.end()
  })
  assert.equal(forwarded, 403, 'X-Forwarded-Host cannot stand in for the Host header')
  const publishRefused = await status(open.url, 'attacker.example', '/')
  assert.equal(publishRefused.status, 403, 'pages too')
  for (const path of ['/health', '/health/live', '/health/ready']) {
    assert.equal((await status(open.url, 'herald-1:8080', path)).status, 200, `${path}: health checks name the instance as balancers and orchestrators reach it`)
  }

  const insecure = await build(t, { HERALD_ALLOW_INSECURE: '1' })
  assert.equal((await status(insecure.url, 'herald.internal')).status, 403, 'HERALD_ALLOW_INSECURE (binding a public address) leaves the guard on')
  const named = await build(t, { HERALD_ALLOWED_HOSTS: 'Herald.Internal,push,[fd00::1]' })
  for (const host of ['herald.internal', `HERALD.internal:${port}`, 'push:8080', '[fd00::1]:8080', `127.0.0.1:${port}`]) assert.equal((await status(named.url, host)).status, 200, host)
  for (const host of ['attacker.example', 'herald.internal.attacker.example', 'pushy', '[fd00::2]']) assert.equal((await status(named.url, host)).status, 403, host)
  const any = await build(t, { HERALD_ALLOWED_HOSTS: '*' })
  assert.equal((await status(any.url, 'attacker.example')).status, 200)
  const keyed = await build(t, { HERALD_JWT_SECRET: SECRET })
  assert.equal((await status(keyed.url, 'push.example.com')).status, 200)
})

test('secrets never appear in configuration errors, and key settings are checked together', () => {
  assert.throws(() => loadConfig({ HERALD_JWT_SECRET: 'short-secret' }), (error: Error) => !error.message.includes('short-secret') && /hidden, 12 characters/.test(error.message))
  assert.throws(() => loadConfig({ HERALD_PRIVATE_TOPICS: 'private/**' }), /need HERALD_JWT_SECRET or HERALD_JWT_PUBLIC_KEY/)
  assert.throws(() => loadConfig({ HERALD_JWT_SECRET: SECRET, HERALD_JWT_PUBLIC_KEY: keyPair('ec').publicKey }), /set one of them/)
  assert.throws(() => loadConfig({ HERALD_JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----' }), /RSA or EC public key/)
})

test('subscriber tokens in the query string never reach the request log', () => {
  assert.equal(redactTokens('/v1/stream?topic=a&access_token=abc.def.ghi&lastEventId=3'), '/v1/stream?topic=a&access_token=[redacted]&lastEventId=3')
  assert.equal(redactTokens('/v1/stream?access_token=x'), '/v1/stream?access_token=[redacted]')
  assert.equal(redactTokens('/v1/stream?topic=a'), '/v1/stream?topic=a')
})
