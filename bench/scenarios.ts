import { setTimeout as sleep } from 'node:timers/promises'
import calculateSlot from 'cluster-key-slot'
import { Redis } from 'ioredis'
import { HttpPublisher } from './http-publisher.js'
import { coreBusySeconds } from './processes.js'
import { now, type Sink, SseLoadClient, tallySequence } from './sse-client.js'
import { HERALD_PREFIX, redisCpuEach, type Running, SERVER_CORE, type System } from './systems.js'
import { LIBRARY_VERSION, publishKeys } from '../src/transport/redis-functions.js'

export type Metrics = Record<string, number>

export async function waitFor (check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`)
    await sleep(20)
  }
}

export function percentile (sorted: Float64Array, fraction: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))] as number
}

/** This process's CPU (user+sys) as a share of one core since `start`. */
function loadMeter (): () => number {
  const cpu = process.cpuUsage()
  const started = now()
  return () => {
    const used = process.cpuUsage(cpu)
    return (used.user + used.system) / 1000 / (now() - started)
  }
}

/**
 * Opens `paths.length` streams, at most ~500 unanswered at a time (no SYN flood past the listen backlog);
 * all must answer 200 within `timeoutMs`, or all are closed and it throws.
 */
export async function openStreams (port: number, paths: string[], sink: Sink | undefined, timeoutMs: number): Promise<SseLoadClient[]> {
  const clients: SseLoadClient[] = []
  const deadline = Date.now() + timeoutMs
  try {
    for (const [index, path] of paths.entries()) {
      clients.push(new SseLoadClient(port, path, sink))
      if (index % 250 === 249) {
        await waitFor(() => clients.filter((client) => !client.settled).length < 250, Math.max(0, deadline - Date.now()), `${paths.length} streams to open`)
      }
    }
    await waitFor(() => clients.every((client) => client.settled), Math.max(0, deadline - Date.now()), `${paths.length} streams to open`)
    const refused = clients.filter((client) => !client.connected)
    if (refused.length > 0) {
      const statuses = [...new Set(refused.map((client) => client.status))].join(', ')
      throw new Error(`${refused.length} of ${paths.length} streams failed (HTTP status ${statuses}; 0 = connection error)`)
    }
    return clients
  } catch (error) {
    for (const client of clients) client.close()
    throw error
  }
}

/**
 * Publishes a warm-up event (seq -1) to every topic that still has a subscriber without one, every 200 ms, until
 * every subscriber has had one: then every subscription is live (the seed's asynchronous Redis SUBSCRIBE
 * included). Throws after 20 s.
 */
export async function warmUp (clients: SseLoadClient[], topicOf: (index: number) => string, send: (topic: string, data: { seq: number, t: number }) => Promise<unknown>): Promise<void> {
  const deadline = Date.now() + 20_000
  while (!clients.every((client) => client.warm) && Date.now() < deadline) {
    const cold = new Set<string>()
    for (const [index, client] of clients.entries()) if (!client.warm) cold.add(topicOf(index))
    await Promise.all([...cold].map(async (topic) => await send(topic, { seq: -1, t: now() })))
    await sleep(200)
  }
  const cold = clients.filter((client) => !client.warm).length
  if (cold > 0) throw new Error(`${cold} subscribers never received a warm-up event in 20 s`)
}

export interface OutgoingEvent {
  topic: string
  data: { seq: number, t: number }
}

/** How a fan-out scenario publishes: `size` events per call; `send` resolves with how many of them failed. */
export interface EventSender {
  size: number
  send: (events: OutgoingEvent[]) => Promise<number>
  close: () => void
}

export type SenderFactory = (system: System, running: Running, publisher: HttpPublisher) => EventSender

/** One HTTP request per event (POST /v1/events, the seed's /post, Nchan's /pub): scenarios a, b and e. */
export const singleRequests: SenderFactory = (system, _running, publisher) => ({
  size: 1,
  send: async ([event]) => {
    const { path, body } = system.publishRequest((event as OutgoingEvent).topic, (event as OutgoingEvent).data)
    const status = await publisher.post(path, body)
    return status >= 200 && status < 300 ? 0 : 1
  },
  close: () => {}
})

/** `size` events per POST /v1/events/batch (Herald only). A batch that is not 202 counts all its events as failed. */
export function batchRequests (size: number): SenderFactory {
  return (system, _running, publisher) => {
    const request = system.publishBatchRequest
    if (request === undefined) throw new Error(`${system.name} has no batch publish`)
    return {
      size,
      send: async (events) => {
        const { path, body } = request(events)
        const status = await publisher.post(path, body)
        return status >= 200 && status < 300 ? 0 : events.length
      },
      close: () => {}
    }
  }
}

/** The Function library's publish function for the bench's prefix (`herald_v1_publish` for `herald:`). */
export const PUBLISH_FUNCTION = `${HERALD_PREFIX.replace(/[^A-Za-z0-9_]/g, '_')}${LIBRARY_VERSION}_publish`

/**
 * `size` events per pipeline of FCALLs straight to Redis from this process, as a backend in another language
 * would publish: Herald only delivers (herald-redis only).
 */
export function functionCalls (size: number): SenderFactory {
  return (system, running) => {
    if (running.redisPort === undefined || running.redis === undefined) throw new Error(`${system.name}: publishing through the Function needs one Redis`)
    const client = new Redis(running.redisPort, '127.0.0.1', { maxRetriesPerRequest: 1, commandTimeout: 5_000 })
    client.on('error', () => {})
    return {
      size,
      send: async (events) => {
        const pipeline = client.pipeline()
        for (const { topic, data } of events) {
          const keys = publishKeys(HERALD_PREFIX, topic)
          pipeline.fcall(PUBLISH_FUNCTION, keys.length, ...keys, JSON.stringify(data))
        }
        const replies = await pipeline.exec().catch(() => null)
        if (replies === null) return events.length
        return replies.filter(([error]) => error !== null).length
      },
      close: () => { client.disconnect() }
    }
  }
}

/**
 * Redis CPU (seconds used in the window, one entry per Redis process) per 100k operations; on a cluster also each
 * shard's seconds per 100k and share of the total, and how far the most uneven shard is from an even share.
 */
export function redisMetrics (seconds: number[], operations: number): Metrics {
  const total = seconds.reduce((sum, value) => sum + value, 0)
  const metrics: Metrics = { redisCpuPer100k: (total / Math.max(1, operations)) * 100_000 }
  if (seconds.length > 1) {
    let deviation = 0
    for (const [index, value] of seconds.entries()) {
      const share = total > 0 ? value / total : Number.NaN
      metrics[`shard${index}CpuPer100k`] = (value / Math.max(1, operations)) * 100_000
      metrics[`shard${index}Share`] = share
      deviation = Math.max(deviation, Math.abs(share * seconds.length - 1))
    }
    metrics.shardShareDeviation = deviation
  }
  return metrics
}

/**
 * Fan-out: `topicCount` topics × `perTopic` subscribers. Waits until every subscriber has received a warm-up
 * event (so every subscription is live, including the seed's asynchronous Redis SUBSCRIBE), then publishes
 * `rate × seconds` events on a fixed schedule, round-robin over the topics. Open loop: each event is sent
 * when it is due, whether or not the previous one was answered, so a slow server cannot slow the offered
 * rate (and hide its own queueing from the latency). All go pipelined on one keep-alive connection, so the
 * server reads them in send order (several connections could reorder them, and then "out of order" would
 * measure the publisher).
 */
export async function fanout (system: System, running: Running, topicCount: number, perTopic: number, rate: number, seconds: number, sending?: SenderFactory): Promise<Metrics> {
  const port = running.server.port
  const sink: Sink = { latencies: [] }
  const topics = Array.from({ length: topicCount }, (_, index) => `bench-${index}`)
  const paths = topics.flatMap((topic) => Array.from({ length: perTopic }, () => system.streamPath(topic)))
  const publisher = new HttpPublisher(port)
  const sender = (sending ?? singleRequests)(system, running, publisher)
  const clients = await openStreams(port, paths, sink, 60_000)
  try {
    await warmUp(clients, (index) => topics[Math.floor(index / perTopic)] as string, async (topic, data) => {
      const { path, body } = system.publishRequest(topic, data)
      await publisher.post(path, body)
    })
    await sleep(200)
    for (const client of clients) client.seqs.length = 0
    const latencies: number[] = []
    sink.latencies = latencies

    const total = Math.round(rate * seconds)
    const cpuBefore = running.server.cpuSeconds()
    const redisBefore = redisCpuEach(running)
    const load = loadMeter()
    const coreBefore = coreBusySeconds(SERVER_CORE)
    const started = now()
    let failed = 0
    let lateStarts = 0
    const answers: Array<Promise<void>> = []
    // Groups of `sender.size` consecutive events, each group sent in one call when its first event is due.
    for (let first = 0; first < total; first += sender.size) {
      const due = started + (first * 1000) / rate
      const wait = due - now()
      if (wait > 1) await sleep(wait)
      else if (wait < -50) lateStarts++
      const t = now()
      const events: OutgoingEvent[] = []
      for (let seq = first; seq < Math.min(total, first + sender.size); seq++) events.push({ topic: topics[seq % topicCount] as string, data: { seq, t } })
      answers.push(sender.send(events).then((failures) => { failed += failures }))
    }
    await Promise.all(answers)
    const expected = total * perTopic
    await waitFor(() => latencies.length >= expected, 10_000, 'deliveries').catch(() => {})
    const elapsed = (now() - started) / 1000
    const loadCpu = load()
    const cpu = running.server.cpuSeconds() - cpuBefore
    const redisCpu = redisCpuEach(running).map((seconds, index) => seconds - (redisBefore[index] ?? 0))
    const foreign = Math.max(0, coreBusySeconds(SERVER_CORE) - coreBefore - cpu) / elapsed

    let lost = 0
    let duplicated = 0
    let outOfOrder = 0
    for (const [index, client] of clients.entries()) {
      const topicIndex = Math.floor(index / perTopic)
      const wanted: number[] = []
      for (let seq = topicIndex; seq < total; seq += topicCount) wanted.push(seq)
      const counts = tallySequence(client.seqs, wanted)
      lost += counts.lost
      duplicated += counts.duplicated
      outOfOrder += counts.outOfOrder
    }
    const sorted = Float64Array.from(latencies).sort()
    const delivered = Math.max(1, latencies.length)
    return {
      deliveriesPerSecond: latencies.length / elapsed,
      p50: percentile(sorted, 0.5),
      p90: percentile(sorted, 0.9),
      p99: percentile(sorted, 0.99),
      max: sorted.at(-1) ?? Number.NaN,
      lost,
      duplicated,
      outOfOrder,
      failedPublishes: failed,
      latePublishes: lateStarts,
      cpuPer100k: (cpu / delivered) * 100_000,
      ...redisMetrics(redisCpu, delivered),
      peakRssMiB: running.server.memory().peak / 2 ** 20,
      loadCpuShare: loadCpu,
      foreignCpuShare: foreign
    }
  } finally {
    sender.close()
    publisher.close()
    for (const client of clients) client.close()
    await sleep(300)
  }
}

/**
 * Idle connections: the server's RSS growth from `count` open, subscribed, silent streams (and Redis's, where
 * it has one), measured after the server settles, divided by `count`.
 */
export async function idle (system: System, running: Running, count: number): Promise<Metrics> {
  const port = running.server.port
  await sleep(1_000)
  const before = running.server.memory().rss
  const redisBefore = running.redis?.memory().rss ?? 0
  const paths = Array.from({ length: count }, (_, index) => system.streamPath(`idle-${index % 100}`))
  const clients = await openStreams(port, paths, undefined, 120_000)
  try {
    const { idleReady } = system
    if (idleReady !== undefined) {
      await waitFor(() => idleReady(running, count), 60_000, `${system.name}'s server side of ${count} streams`)
    }
    await sleep(3_000)
    const open = clients.filter((client) => client.connected && !client.closed).length
    if (open < count) throw new Error(`${count - open} idle streams closed early`)
    const { rss, peak } = running.server.memory()
    const redisAfter = running.redis?.memory().rss ?? 0
    return {
      connections: open,
      kibPerConnection: (rss - before) / 1024 / open,
      redisKibPerConnection: (redisAfter - redisBefore) / 1024 / open,
      rssBeforeMiB: before / 2 ** 20,
      rssMiB: rss / 2 ** 20,
      peakRssMiB: peak / 2 ** 20
    }
  } finally {
    for (const client of clients) client.close()
    await sleep(500)
  }
}

/** What a publish-only run sends: how many topics, and events per request (1: POST /v1/events; more: a batch). */
export interface PublishLoad {
  topics: number
  eventsPerRequest: number
}

/**
 * Publish-only throughput, no subscribers: `connections` keep-alive connections, each keeping `depth`
 * pipelined requests in flight, for `warmSeconds` unmeasured and then `seconds` measured. Events go
 * round-robin to `load.topics` topics (10 by default), `load.eventsPerRequest` per request (a batch when more
 * than 1). Counts are events, not requests. On a cluster, it also counts each shard's share of the events.
 */
export async function publishOnly (system: System, running: Running, connections: number, depth: number, seconds: number, warmSeconds: number, load: PublishLoad = { topics: 10, eventsPerRequest: 1 }): Promise<Metrics> {
  const port = running.server.port
  const publishers = Array.from({ length: connections }, () => new HttpPublisher(port))
  const topics = Array.from({ length: load.topics }, (_, index) => `pub-${index}`)
  const shardOf = topics.map((topic) => running.shardOfSlot?.[calculateSlot(`${HERALD_PREFIX}{${topic}}`)] ?? 0)
  const perShard = new Array<number>(running.shards?.length ?? 1).fill(0)
  const batch = system.publishBatchRequest
  if (load.eventsPerRequest > 1 && batch === undefined) throw new Error(`${system.name} has no batch publish`)
  let measuring = false
  let accepted = 0
  let failed = 0
  let seq = 0
  let cpuBefore = 0
  let writesBefore = 0
  let redisBefore: number[] = []
  let coreBefore = 0
  let meter = loadMeter()
  let started = now()
  const deadline = started + (warmSeconds + seconds) * 1000
  // The first `warmSeconds` are load without counting, so JIT warm-up and connection set-up stay out of the window.
  const warm = setTimeout(() => {
    measuring = true
    accepted = failed = 0
    perShard.fill(0)
    cpuBefore = running.server.cpuSeconds()
    writesBefore = running.server.writeSyscalls()
    redisBefore = redisCpuEach(running)
    coreBefore = coreBusySeconds(SERVER_CORE)
    meter = loadMeter()
    started = now()
  }, warmSeconds * 1000)
  try {
    await Promise.all(publishers.flatMap((publisher) => Array.from({ length: depth }, async () => {
      while (now() < deadline) {
        const first = seq
        seq += load.eventsPerRequest
        const t = now()
        const { path, body } = load.eventsPerRequest === 1 || batch === undefined
          ? system.publishRequest(topics[first % load.topics] as string, { seq: first, t })
          : batch(Array.from({ length: load.eventsPerRequest }, (_, offset) => ({ topic: topics[(first + offset) % load.topics] as string, data: { seq: first + offset, t } })))
        const status = await publisher.post(path, body)
        if (status >= 200 && status < 300) {
          accepted += load.eventsPerRequest
          for (let index = first; index < first + load.eventsPerRequest; index++) (perShard[shardOf[index % load.topics] as number] as number)++
        } else {
          failed += load.eventsPerRequest
        }
        // A refused connection answers at once: do not spin on it.
        if (status === 0) await sleep(10)
      }
    })))
  } finally {
    clearTimeout(warm)
    for (const publisher of publishers) publisher.close()
  }
  if (!measuring) throw new Error('publish-only ended before its measuring window')
  const elapsed = (now() - started) / 1000
  const cpu = running.server.cpuSeconds() - cpuBefore
  const metrics: Metrics = {
    acceptedPerSecond: accepted / elapsed,
    failed,
    cpuPer100k: (cpu / Math.max(1, accepted)) * 100_000,
    writeSyscallsPerEvent: (running.server.writeSyscalls() - writesBefore) / Math.max(1, accepted),
    ...redisMetrics(redisCpuEach(running).map((value, index) => value - (redisBefore[index] ?? 0)), accepted),
    serverCpuShare: cpu / elapsed,
    loadCpuShare: meter(),
    foreignCpuShare: Math.max(0, coreBusySeconds(SERVER_CORE) - coreBefore - cpu) / elapsed
  }
  if (perShard.length > 1) for (const [index, count] of perShard.entries()) metrics[`shard${index}EventShare`] = count / Math.max(1, accepted)
  return metrics
}
