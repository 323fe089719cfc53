/**
 * `npx tsx bench/event-costs.ts [rate=5000] [seconds=10]`: Herald's CPU per operation, apart, in CPU seconds
 * (/proc), so what else the machine does changes the figures little. Herald runs as its own process
 * (test/helpers/herald-process.ts) on a redis-server this script starts; the clients run here.
 * - Per-user delivery: 1,000 streams on 1,000 topics (one each), events published straight into Redis through the
 *   Function library (FCALL, as a backend can), `rate` per second for `seconds`: Herald's CPU per delivery is then
 *   the receive from Redis, the check and the write to one socket, with no HTTP publish in it.
 * - Publishing: single `POST /v1/events` (16 requests in flight), then `POST /v1/events/batch` of 100 events each
 *   (4 in flight), to 1,000 topics nobody listens to, for `seconds` each: Herald's and Redis's CPU per event.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { Agent, request } from 'undici'
import { functionLibrary, publishKeys } from '../src/transport/redis-functions.js'
import { HeraldProcess } from '../test/helpers/herald-process.js'
import { RedisServer } from '../test/helpers/redis-server.js'
import { cpuSecondsOf, raiseDescriptorLimit } from './processes.js'
import { openStreams, waitFor } from './scenarios.js'
import { now } from './sse-client.js'

const [rate = 5000, seconds = 10] = process.argv.slice(2, 4).map(Number)
const TOPICS = 1000
raiseDescriptorLimit()
const redis = await RedisServer.start()
const client = new Redis(redis.url)
const herald = await HeraldProcess.start({ REDIS_URL: redis.url, HERALD_MAX_STREAMS_PER_ADDRESS: '0', HERALD_RATE_LIMIT_PER_MINUTE: '0' })
const pid = herald.pid as number
const redisPid = redis.pid as number
// Herald loads the library at start with its default settings: call it by the name it loads.
const library = functionLibrary({ prefix: 'herald:', historySize: 1000, historyRetentionMs: 86_400_000, idempotencyTtlMs: 600_000 })
const publish = async (topic: string, data: unknown): Promise<unknown> => await client.fcall(library.publish, 2, ...publishKeys('herald:', topic), JSON.stringify(data), 'message')

try {
  const topics = Array.from({ length: TOPICS }, (_, index) => `user/${index}`)
  const clients = await openStreams(herald.port, topics.map((topic) => `/v1/stream?topic=${encodeURIComponent(topic)}`), { latencies: undefined }, 60_000)
  try {
    const deadline = Date.now() + 20_000
    while (!clients.every((stream) => stream.warm) && Date.now() < deadline) {
      await Promise.all(topics.filter((_, index) => !(clients[index]?.warm ?? true)).map(async (topic) => await publish(topic, { seq: -1, t: now() })))
      await sleep(200)
    }
    for (const stream of clients) stream.seqs.length = 0
    const total = rate * seconds
    const before = cpuSecondsOf(pid)
    const redisBefore = cpuSecondsOf(redisPid)
    const started = now()
    // Sent in steps of 10 ms, as a backend publishing at `rate` would, pipelined within a step.
    for (let seq = 0; seq < total;) {
      const due = started + (seq * 1000) / rate
      if (due > now()) await sleep(due - now())
      const step = Math.min(total - seq, Math.max(1, Math.round(rate / 100)))
      await Promise.all(Array.from({ length: step }, async (_, offset) => await publish(topics[(seq + offset) % TOPICS] as string, { seq: seq + offset, t: now() })))
      seq += step
    }
    const delivered = (): number => clients.reduce((sum, stream) => sum + stream.seqs.length, 0)
    await waitFor(() => delivered() >= total, 10_000, 'deliveries').catch(() => {})
    const elapsed = (now() - started) / 1000
    const cpu = cpuSecondsOf(pid) - before
    const redisCpu = cpuSecondsOf(redisPid) - redisBefore
    console.log(`per-user delivery, ${TOPICS} topics × 1 stream, ${rate} events/s offered for ${seconds} s, published by FCALL: ${delivered()} of ${total} delivered in ${elapsed.toFixed(1)} s; ` +
      `Herald ${(cpu * 100_000 / delivered()).toFixed(2)} CPU-s per 100k deliveries (${(100 * cpu / elapsed).toFixed(0)}% of a core), Redis ${(redisCpu * 100_000 / total).toFixed(2)} per 100k publishes`)
  } finally {
    for (const stream of clients) stream.close()
  }

  for (const perRequest of [1, 100]) {
    await sleep(1_000)
    const { rate: accepted, cpu, redisCpu, failed, share } = await publishOver(perRequest)
    const what = perRequest === 1 ? 'single publishing, POST /v1/events, 16 in flight' : `batch publishing, ${perRequest} events per POST /v1/events/batch, 4 in flight`
    console.log(`${what}, ${seconds} s: ${Math.round(accepted)} events/s accepted, ${failed} requests failed; ` +
      `Herald ${cpu.toFixed(2)} CPU-s per 100k events (${(100 * share).toFixed(0)}% of a core), Redis ${redisCpu.toFixed(2)} per 100k`)
  }
} finally {
  client.disconnect()
  await herald.kill()
  await redis.stop()
}

/**
 * Publishes for `seconds` (after 1 s unmeasured), `perRequest` events per request to 1,000 topics nobody listens to:
 * single events 16 requests in flight, batches 4. Herald's and Redis's CPU-s per 100k accepted events.
 */
async function publishOver (perRequest: number): Promise<{ rate: number, cpu: number, redisCpu: number, failed: number, share: number }> {
  const agent = new Agent({ connections: 4, pipelining: perRequest === 1 ? 4 : 1 })
  let accepted = 0
  let failed = 0
  let round = 0
  const request1 = (): { path: string, body: string } => {
    round++
    if (perRequest === 1) return { path: '/v1/events', body: JSON.stringify({ topic: `single/${round % TOPICS}`, data: { n: round } }) }
    return { path: '/v1/events/batch', body: JSON.stringify({ events: Array.from({ length: perRequest }, (_, index) => ({ topic: `batch/${(round * perRequest + index) % TOPICS}`, data: { n: round * perRequest + index } })) }) }
  }
  const send = async (deadline: number, count: boolean): Promise<void> => {
    while (now() < deadline) {
      const { path, body } = request1()
      const response = await request(`http://127.0.0.1:${herald.port}${path}`, { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' }, body })
      await response.body.dump()
      if (!count) continue
      if (response.statusCode >= 200 && response.statusCode < 300) accepted += perRequest
      else failed++
    }
  }
  const inFlight = perRequest === 1 ? 16 : 4
  try {
    const warmUntil = now() + 1_000
    await Promise.all(Array.from({ length: inFlight }, async () => await send(warmUntil, false)))
    const before = cpuSecondsOf(pid)
    const redisBefore = cpuSecondsOf(redisPid)
    const started = now()
    await Promise.all(Array.from({ length: inFlight }, async () => await send(started + seconds * 1000, true)))
    const elapsed = (now() - started) / 1000
    const cpu = cpuSecondsOf(pid) - before
    const redisCpu = cpuSecondsOf(redisPid) - redisBefore
    return { rate: accepted / elapsed, cpu: cpu * 100_000 / Math.max(1, accepted), redisCpu: redisCpu * 100_000 / Math.max(1, accepted), failed, share: cpu / elapsed }
  } finally {
    await agent.close()
  }
}
