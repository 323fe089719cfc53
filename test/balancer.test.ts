import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { request } from 'node:http'
import { test, type TestContext } from 'node:test'
import { publish, until } from './helper.js'
import { BalancerProcess, CONFIG_FILES, missing, validate, type BalancerKind } from './helpers/balancer-process.js'
import { failover, openStreams } from './helpers/failover.js'
import { HeraldProcess } from './helpers/herald-process.js'
import { RedisServer } from './helpers/redis-server.js'
import { SECRET, token } from './helpers/tokens.js'

const KINDS: BalancerKind[] = ['nginx', 'haproxy', 'caddy']
const LANGUAGES: Record<BalancerKind, string> = { nginx: 'nginx', haproxy: 'haproxy', caddy: 'caddyfile' }

// What a deployment behind a balancer runs: tokens on (open development mode is tested at the end of this file),
// and X-Forwarded-For trusted from the balancer's address. Heartbeats every second, not 15 s: HAProxy and Caddy
// notice that a client left only when bytes for it fail (a few heartbeats later), and the test waits for that.
const HEARTBEAT_MS = 1_000
const HERALD_ENV = { HERALD_JWT_SECRET: SECRET, HERALD_TRUST_PROXY: '127.0.0.1', HERALD_HEARTBEAT_MS: String(HEARTBEAT_MS) }
const PUBLISHER = { authorization: `Bearer ${token({ publish: ['**'] })}` }

/** A Redis and two Herald processes on it, stopped when the test ends. */
async function cluster (t: TestContext): Promise<{ a: HeraldProcess, b: HeraldProcess, upstreams: [string, string] }> {
  const redis = await RedisServer.start()
  t.after(async () => await redis.stop())
  const env = { REDIS_URL: redis.url, ...HERALD_ENV }
  const [a, b] = await Promise.all([HeraldProcess.start(env), HeraldProcess.start(env)])
  t.after(async () => { await a.kill(); await b.kill() })
  return { a, b, upstreams: [`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`] }
}

/**
 * One stream and one publish through the balancer, timed: the stream's first bytes (the `retry:` line Herald
 * writes at once) and a small event must both arrive well before any buffer could fill or a heartbeat push it.
 */
async function probeStreaming (balancer: BalancerProcess, instances: HeraldProcess[], topic: string): Promise<{ headersMs: number, firstBytesMs: number, eventMs: number, closedMs: number }> {
  const started = Date.now()
  let headersAt = 0
  let firstBytesAt = 0
  let eventAt = 0
  let published = 0
  let text = ''
  let headers: Record<string, unknown> = {}
  const req = request(`${balancer.url}/v1/stream?topic=${topic}`, { headers: { accept: 'text/event-stream' } }, (response) => {
    headersAt = Date.now()
    headers = response.headers
    response.setEncoding('utf8')
    response.on('data', (chunk: string) => {
      if (firstBytesAt === 0) firstBytesAt = Date.now()
      text += chunk
      if (eventAt === 0 && text.includes('"probe"')) eventAt = Date.now()
    })
  })
  req.on('error', () => {})
  req.end()
  try {
    await until(() => firstBytesAt > 0, 2_000, `the stream's first bytes through ${balancer.kind} (does it buffer?)`)
    assert.match(String(headers['content-type']), /^text\/event-stream/)
    assert.match(text, /^: herald\nretry: \d+\n/, 'the opening comes first')
    published = Date.now()
    const reply = await publish(balancer.url, { topic, data: 'probe' }, PUBLISHER)
    assert.equal(reply.status, 202)
    await until(() => eventAt > 0, 2_000, `a published event through ${balancer.kind} (does it buffer?)`)
  } finally {
    req.destroy()
  }
  // The client left: the balancer must close its upstream stream too, at the latest a few heartbeats later.
  const left = Date.now()
  await until(async () => (await Promise.all(instances.map(openStreams))).every((streams) => streams === 0), 6 * HEARTBEAT_MS + 1_000, `${balancer.kind} to close the upstream stream of a client that left`)
  return { headersMs: headersAt - started, firstBytesMs: firstBytesAt - started, eventMs: eventAt - published, closedMs: Date.now() - left }
}

/**
 * One request through the balancer from a chosen loopback source address (Linux answers all of 127.0.0.0/8), with
 * a chosen Host. A stream's answer ends after its first bytes.
 */
async function send (url: string, { from, host, method = 'GET', path, body }: { from: string, host: string, method?: string, path: string, body?: unknown }): Promise<{ status: number, text: string }> {
  return await new Promise((resolve, reject) => {
    const headers: Record<string, string> = { host }
    if (body !== undefined) headers['content-type'] = 'application/json'
    const req = request(`${url}${path}`, { method, localAddress: from, headers }, (response) => {
      let text = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => {
        text += chunk
        if (String(response.headers['content-type']).startsWith('text/event-stream')) req.destroy()
      })
      response.on('close', () => resolve({ status: response.statusCode ?? 0, text }))
    })
    req.on('error', reject)
    req.end(body === undefined ? undefined : JSON.stringify(body))
  })
}

test('docs/balancers.md shows each deploy/ config exactly as the tests run it', () => {
  const page = readFileSync('docs/balancers.md', 'utf8')
  for (const kind of KINDS) {
    const text = readFileSync(CONFIG_FILES[kind], 'utf8')
    assert.ok(page.includes(`\`\`\`${LANGUAGES[kind]}\n${text}\`\`\`\n`), `docs/balancers.md must show ${CONFIG_FILES[kind]} as it is, in a \`\`\`${LANGUAGES[kind]} block: copy the file in`)
  }
})

for (const kind of KINDS) {
  test(`${CONFIG_FILES[kind]} is valid for ${kind} itself`, { skip: missing(kind) }, () => {
    const check = validate(kind, ['127.0.0.1:8081', '127.0.0.1:8082'])
    assert.ok(check.ok, check.output)
  })
}

test('nginx (deploy/nginx.conf) in front of two instances: unbuffered streams, and an instance killed loses nothing', { timeout: 60_000, skip: missing('nginx') }, async (t) => {
  const { a, b, upstreams } = await cluster(t)
  const nginx = await BalancerProcess.start('nginx', upstreams)
  t.after(async () => await nginx.stop())
  const probe = await probeStreaming(nginx, [a, b], 'probe')
  t.diagnostic(`nginx streaming: ${JSON.stringify(probe)}`)
  assert.ok(probe.firstBytesMs < 1_000 && probe.eventMs < 1_000, JSON.stringify(probe))

  await failover(t, nginx, a, b, 100, { publisher: PUBLISHER })
  // nginx OSS has no active health checks: the dead instance is found by requests. Its streams breaking already
  // count as its failure (max_fails=1), so few or no new connections are even tried on it for fail_timeout.
  const refused = nginx.errorLog().match(/Connection refused\) while connecting to upstream/g)?.length ?? 0
  t.diagnostic(`nginx: ${refused} connection(s) refused by the dead instance after the kill, each retried on the other`)
})

// Caddy 2.6 (Debian 12's) keeps choosing the dead instance until its active check leaves it out (no passive
// checks: see deploy/Caddyfile), and answered 502 to 1 or 2 publishes after the kill in 8 runs out of 8.
const PUBLISHES_CUT_AFTER_KILL: Record<'haproxy' | 'caddy', number> = { haproxy: 0, caddy: 3 }

for (const kind of ['haproxy', 'caddy'] as const) {
  test(`${kind} (${CONFIG_FILES[kind]}) in front of two instances: unbuffered streams, and an instance killed loses nothing`, { timeout: 60_000, skip: missing(kind) }, async (t) => {
    const { a, b, upstreams } = await cluster(t)
    const balancer = await BalancerProcess.start(kind, upstreams)
    t.after(async () => await balancer.stop())
    const probe = await probeStreaming(balancer, [a, b], 'probe')
    t.diagnostic(`${kind} streaming: ${JSON.stringify(probe)}`)
    assert.ok(probe.firstBytesMs < 1_000 && probe.eventMs < 1_000, JSON.stringify(probe))
    await failover(t, balancer, a, b, 20, { publisher: PUBLISHER, publishesCutAfterKill: PUBLISHES_CUT_AFTER_KILL[kind] })
  })
}

// Open development mode behind a balancer: before HERALD_ALLOWED_HOSTS every request there was a 403 (the balancer
// passes on the client's Host, which is no loopback name), and the only way out switched the guard off.
for (const kind of KINDS) {
  test(`open development mode behind ${kind}: HERALD_ALLOWED_HOSTS admits its name, and limits and logs see each client's address`, { timeout: 30_000, skip: missing(kind) }, async (t) => {
    const herald = await HeraldProcess.start({ HERALD_ALLOWED_HOSTS: 'push.example', HERALD_TRUST_PROXY: '127.0.0.1', HERALD_RATE_LIMIT_PER_MINUTE: '1', LOG_LEVEL: 'info' })
    t.after(async () => await herald.kill())
    // One instance behind both upstream slots: the rate limit is counted per instance.
    const upstream = `127.0.0.1:${herald.port}`
    const balancer = await BalancerProcess.start(kind, [upstream, upstream])
    t.after(async () => await balancer.stop())
    const event = { topic: 'behind', data: 'hi' }

    const stream = await send(balancer.url, { from: '127.0.0.2', host: 'push.example', path: '/v1/stream?topic=behind' })
    assert.equal(stream.status, 200, stream.text)
    assert.match(stream.text, /^: herald\nretry: \d+\n/)
    const refused = await send(balancer.url, { from: '127.0.0.2', host: 'attacker.example', path: '/v1/stream?topic=behind' })
    assert.equal(refused.status, 403)
    assert.equal(JSON.parse(refused.text).code, 'HERALD_HOST_REFUSED')

    // Each client's own publish budget (1 a minute): Herald keys it on the address X-Forwarded-For gives, not on
    // the balancer's, which every client shares.
    assert.equal((await send(balancer.url, { from: '127.0.0.2', host: 'push.example', method: 'POST', path: '/v1/events', body: event })).status, 202)
    assert.equal((await send(balancer.url, { from: '127.0.0.2', host: 'push.example', method: 'POST', path: '/v1/events', body: event })).status, 429)
    assert.equal((await send(balancer.url, { from: '127.0.0.3', host: 'push.example', method: 'POST', path: '/v1/events', body: event })).status, 202, 'another client has a budget of its own')

    const publishers = () => herald.output().split('\n').flatMap((line) => {
      try {
        const entry = JSON.parse(line) as { req?: { method: string, remoteAddress: string } }
        return entry.req?.method === 'POST' ? [entry.req.remoteAddress] : []
      } catch {
        return []
      }
    })
    // The child's log reaches this process a little after its answers.
    await until(() => publishers().length >= 3, 5_000, 'the request log lines of the 3 publishes')
    assert.deepEqual(publishers(), ['127.0.0.2', '127.0.0.2', '127.0.0.3'], 'the request log names each client')
  })
}
