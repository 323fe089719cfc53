import assert from 'node:assert/strict'
import { test } from 'node:test'
import { build, publish, until } from './helper.js'
import { BalancerProcess, missing } from './helpers/balancer-process.js'
import { HeraldProcess } from './helpers/herald-process.js'
import { scrape } from './helpers/metrics.js'
import { publishLoop } from './helpers/publish-loop.js'
import { RedisServer } from './helpers/redis-server.js'
import { ResumingClient, tallyAll } from './helpers/resuming-client.js'
import { openStream } from './helpers/sse-client.js'
import { SECRET, token } from './helpers/tokens.js'

async function readiness (url: string): Promise<{ status: number, body: { status: string, reasons: string[] } }> {
  const response = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(10_000) })
  return { status: response.status, body: await response.json() as { status: string, reasons: string[] } }
}

for (const broker of ['memory', 'redis'] as const) {
  test(`${broker}: a drain turns ready off at once, refuses new streams retryably, keeps publishing, and ends open streams spread over the window`, { timeout: 60_000 }, async (t) => {
    const env: Record<string, string> = { HERALD_DRAIN_MS: '1500', HERALD_RETRY_MS: '3000' }
    if (broker === 'redis') {
      const redis = await RedisServer.start()
      t.after(async () => await redis.stop())
      env.REDIS_URL = redis.url
    }
    const { app, url } = await build(t, env)
    assert.deepEqual(await readiness(url), { status: 200, body: { status: 'ready', reasons: [] } })
    assert.equal((await fetch(`${url}/health/live`)).status, 200)

    const streams = await Promise.all(Array.from({ length: 30 }, async () => await openStream(`${url}/v1/stream?topic=drain`)))
    t.after(() => { for (const stream of streams) stream.close() })
    const endedAt = new Map<number, number>()
    const startedAt = Date.now()
    const drained = app.drain()

    assert.deepEqual(await readiness(url), { status: 503, body: { status: 'not-ready', reasons: ['draining'] } })
    assert.equal((await scrape(app)).value('herald_draining'), 1)
    // A new stream: the in-band refusal EventSource retries, not a status that ends it for good.
    const refused = await openStream(`${url}/v1/stream?topic=drain`)
    await until(() => refused.ended(), 5_000, 'the refusal to end')
    assert.equal(refused.status, 200)
    assert.equal(refused.events[0]?.event, 'herald.unavailable')
    assert.equal(JSON.parse(refused.events[0]?.data ?? '{}').reason, 'draining')
    // Publishing goes on, and the streams not yet ended get the events.
    const reply = await publish(url, { topic: 'drain', data: 'during' })
    assert.equal(reply.status, 202)

    await until(() => {
      streams.forEach((stream, index) => { if (stream.ended() && !endedAt.has(index)) endedAt.set(index, Date.now() - startedAt) })
      return endedAt.size === streams.length
    }, 10_000, 'every stream to end')
    await drained
    const drainMs = Date.now() - startedAt
    const times = [...endedAt.values()].sort((a, b) => a - b)
    t.diagnostic(`${broker} drain: 30 streams ended from ${times[0]} to ${times.at(-1)} ms; drain() took ${drainMs} ms`)
    // Spread, not all at once: a generous bound on a 1.5 s window.
    assert.ok((times.at(-1) ?? 0) - (times[0] ?? 0) >= 500, `streams ended over ${(times.at(-1) ?? 0) - (times[0] ?? 0)} ms, not spread over the window`)
    assert.ok(drainMs >= 1_400, `drain() resolved after ${drainMs} ms, before its window`)
    for (const stream of streams) {
      // Each ended with a short reconnection delay: jittered, at most 1.5 × 1 s, below HERALD_RETRY_MS.
      const retries = [...stream.text().matchAll(/^retry: (\d+)$/gm)].map((match) => Number(match[1]))
      const last = retries.at(-1) ?? 0
      assert.ok(last >= 500 && last <= 1_500, `the drained stream's last retry: ${last}`)
    }
    const received = streams.filter((stream) => stream.events.some((event) => event.id === reply.body.id)).length
    assert.ok(received > 0, 'streams still open during the drain get new events')
    assert.equal((await scrape(app)).value('herald_streams_closed_total', { reason: 'draining' }), 30)
  })
}

test('readiness fails while Redis does not answer, and comes back', { timeout: 30_000 }, async (t) => {
  const redis = await RedisServer.start()
  t.after(async () => await redis.stop())
  const { url } = await build(t, { REDIS_URL: redis.url, HERALD_REDIS_COMMAND_TIMEOUT_MS: '300' })
  assert.equal((await readiness(url)).status, 200)
  redis.pause()
  t.after(() => redis.resume())
  await until(async () => (await readiness(url)).status === 503, 5_000, 'ready to turn 503')
  assert.deepEqual((await readiness(url)).body.reasons, ['redis-not-answering'])
  // Live stays 200: restarting the process would not help.
  assert.equal((await fetch(`${url}/health/live`)).status, 200)
  redis.resume()
  await until(async () => (await readiness(url)).status === 200, 5_000, 'ready again')
  await redis.kill()
  await until(async () => (await readiness(url)).status === 503, 5_000, 'ready to turn 503 with Redis gone')
  assert.ok((await readiness(url)).body.reasons.includes('subscriber-not-subscribed'))
})

test('SIGTERM behind nginx with hundreds of streams on two instances: drained clients resume on the other, 0 lost, 0 duplicated', { timeout: 90_000, skip: missing('nginx') }, async (t) => {
  const redis = await RedisServer.start()
  t.after(async () => await redis.stop())
  const env = { REDIS_URL: redis.url, HERALD_JWT_SECRET: SECRET, HERALD_TRUST_PROXY: '127.0.0.1', HERALD_MAX_STREAMS_PER_ADDRESS: '0', HERALD_DRAIN_MS: '2000' }
  const [a, b] = await Promise.all([HeraldProcess.start(env), HeraldProcess.start(env)])
  t.after(async () => { await a.kill(); await b.kill() })
  const nginx = await BalancerProcess.start('nginx', [`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`])
  t.after(async () => await nginx.stop())

  const count = 300
  const openOn = async (instance: HeraldProcess): Promise<number> => ((await (await fetch(`${instance.url}/health`)).json()) as { subscriptions: number }).subscriptions
  const clients = Array.from({ length: count }, () => new ResumingClient([nginx.url], '/v1/stream?topic=sigterm', 100))
  for (const client of clients) client.start()
  t.after(() => { for (const client of clients) client.stop() })
  await until(async () => await openOn(a) + await openOn(b) === count, 20_000, `${count} streams through nginx`)
  const onA = await openOn(a)
  assert.ok(onA > 0 && onA < count, `streams on both instances (${onA} of ${count} on A)`)

  // A publish sent on a keep-alive connection A closes at exit gets nginx's 502 (it never resends a POST): the
  // publisher retries it with its idempotency key, as the README tells publishers to.
  const loop = publishLoop(nginx.url, 'sigterm', { headers: { authorization: `Bearer ${token({ publish: ['**'] })}` }, retry: true })
  await until(() => loop.accepted().length >= 30, 10_000, 'publishing')
  const startedAt = Date.now()
  const exitCode = await a.kill('SIGTERM')
  const exitMs = Date.now() - startedAt
  await until(async () => await openOn(b) === count, 20_000, 'every client on B')
  await until(() => loop.results.filter((result) => result.startedAt > startedAt + exitMs).length >= 30, 10_000, 'publishes after the exit')
  await loop.stop()

  const accepted = loop.accepted()
  await until(() => clients.every((client) => client.ids.length >= accepted.length), 15_000, 'clients to catch up')
  const { lost, duplicated, outOfOrder } = tallyAll(clients, accepted)
  const failedPublishes = loop.results.filter((result) => result.status !== 202)
  const retried = loop.results.filter((result) => result.attempts > 1).length
  const refusals = clients.reduce((sum, client) => sum + client.refusals, 0)
  t.diagnostic(`SIGTERM drain behind nginx: ${count} clients (${onA} on A), A exited ${exitCode} after ${exitMs} ms; ${accepted.length} events, ${failedPublishes.length} publishes failed, ${retried} retried, ${refusals} in-band refusals; lost ${lost}, duplicated ${duplicated}`)
  assert.equal(exitCode, 0, 'a clean exit')
  assert.deepEqual({ lost, duplicated, outOfOrder }, { lost: 0, duplicated: 0, outOfOrder: 0 })
  assert.deepEqual(failedPublishes, [], 'every publish during and after the drain succeeded')
  assert.ok(retried <= 2, `${retried} publishes needed a retry: more than the keep-alive race at exit explains`)
  assert.ok(exitMs >= 2_000, `the drain took its window (${exitMs} ms)`)
})
