import { Redis } from 'ioredis'
import { setTimeout as sleep } from 'node:timers/promises'
import { loadConfig } from '../../src/config.js'
import { RedisTransport } from '../../src/transport/redis.js'
import { waitFor } from '../scenarios.js'
import { neverReadingStream, now, SseFrameCounter } from '../sse-client.js'
import { heraldHealth, type Finding, type Lab } from './lab.js'
import { cpuMeter, cpuText, neverReaderRoom } from './host.js'
import { PacedPublisher } from './paced-publisher.js'
import { mib, seconds, spread, spreadText } from './stats.js'

interface Storm {
  name: string
  /** What the case adds, when it is not one of the issue's. */
  note?: string
  topics: number
  eventsPerTopic: number
  eventBytes: number
  clients: number
}

const STORMS: Storm[] = [
  { name: 'big', topics: 4, eventsPerTopic: 1_000, eventBytes: 60_000, clients: 20 },
  { name: 'chat', topics: 32, eventsPerTopic: 1_000, eventBytes: 1_000, clients: 50 },
  {
    name: 'many',
    topics: 4,
    eventsPerTopic: 100,
    eventBytes: 60_000,
    clients: 100,
    note: 'Not one of the issue\'s cases: more such requests at once, to see what A\'s memory does. A page is ~100 events whatever their size (6 MB of 60 KB events), and each replay keeps its page while its client takes it.'
  }
]
/** Resumes whose clients never read: each replay keeps its page (~100 events) until the client is reset. */
const NEVER_READING: Storm = { name: 'idle', topics: 4, eventsPerTopic: 100, eventBytes: 60_000, clients: 100 }
/** How long to watch A's memory with the never-reading resumes open (they are reset only after the 30 s stall timeout). */
const NEVER_READING_WATCH_MS = 8_000

/** B's publishes to its own topic, meanwhile: what a busy chat sees. */
const STEADY_RATE = 50
const REPLAY_LIMIT_MS = 60_000

/**
 * Fills the histories straight through Herald's publish script (the transport, as another backend would call it),
 * round robin over the topics so the ids interleave as they would in use.
 */
async function fill (url: string, storm: Storm): Promise<void> {
  const config = loadConfig({})
  const publisher = new Redis(url)
  const subscriber = new Redis(url)
  try {
    const transport = new RedisTransport(publisher, subscriber, {
      prefix: config.redisPrefix,
      historySize: config.historySize,
      historyRetentionMs: config.historyRetentionMs,
      idempotencyTtlMs: config.idempotencyTtlMs
    })
    const data = JSON.stringify('x'.repeat(storm.eventBytes - 2))
    const total = storm.topics * storm.eventsPerTopic
    for (let index = 0; index < total; index += 64) {
      await Promise.all(Array.from({ length: Math.min(64, total - index) }, async (_, offset) =>
        await transport.publish({ topics: [`${storm.name}-${(index + offset) % storm.topics}`], data })))
    }
  } finally {
    publisher.disconnect()
    subscriber.disconnect()
  }
}

async function measureStorm (lab: Lab, storm: Storm): Promise<{ line: string, details: string[] }> {
  const redis = await lab.redis()
  const filledAt = now()
  await fill(redis.url, storm)
  const fillMs = now() - filledAt
  const a = await lab.herald({ REDIS_URL: redis.url })
  const b = await lab.herald({ REDIS_URL: redis.url })
  const steady = new PacedPublisher(b.port, STEADY_RATE, (seq) => JSON.stringify({ topic: 'steady', data: { seq } }))
  lab.defer(async () => await steady.stop())
  steady.start()
  const quietFrom = now()
  await sleep(2_000)
  const rssBefore = a.rssBytes()

  const path = streamPath(storm)
  const expected = storm.topics * storm.eventsPerTopic
  const started = now()
  const cpu = cpuMeter({ 'Herald A': a.pid, 'Herald B': b.pid, Redis: redis.pid })
  const clients = Array.from({ length: storm.clients }, () => new SseFrameCounter(a.port, path))
  lab.defer(() => { for (const client of clients) client.close() })
  let peakRss = 0
  const sampler = setInterval(() => { peakRss = Math.max(peakRss, a.rssBytes()) }, 100)
  lab.defer(() => clearInterval(sampler))
  // Until every client has all its events or was cut; past the limit, what arrived is reported.
  await waitFor(() => clients.every((client) => client.frames >= expected || client.closed), REPLAY_LIMIT_MS, 'the replays').catch(() => {})
  clearInterval(sampler)
  const ended = now()
  const cores = cpu()
  await sleep(500)
  await steady.stop()

  const cut = clients.filter((client) => client.closed && client.frames < expected).length
  const done = clients.filter((client) => client.frames >= expected).map((client) => client.lastFrameAt - started)
  const received = clients.reduce((sum, client) => sum + client.frames, 0)
  const gigabytes = clients.reduce((sum, client) => sum + client.bytes, 0) / 1e9
  const quiet = steady.sentBetween(quietFrom, started)
  const during = steady.sentBetween(started, ended)
  const failed = during.filter((sample) => sample.status !== 202).length
  const latency = spread(during.map((sample) => sample.ms))
  const replayMs = done.length === clients.length ? Math.max(...done) : ended - started
  const completion = done.length === clients.length
    ? `all ${clients.length} replays complete in ${seconds(replayMs)}`
    : `${done.length} of ${clients.length} replays complete after ${seconds(replayMs)} (${received} of ${expected * clients.length} events, ${cut} cut)`
  const line = `${storm.topics}×${storm.eventsPerTopic}×${storm.eventBytes / 1000} KB, ${storm.clients} resumes on A: B publish ${spreadText(latency)}; A peak RSS ${mib(Math.max(peakRss, a.peakRssBytes()))}; ${completion}`
  return {
    line,
    details: [
      `**${storm.topics} topics × ${storm.eventsPerTopic} events × ${storm.eventBytes.toLocaleString('en')} bytes, ${storm.clients} requests \`GET /v1/stream?topic=…×${storm.topics}&lastEventId=0\` on A**: ` +
        `history filled through the publish script in ${seconds(fillMs)}; B published ${STEADY_RATE}/s to another topic throughout.${storm.note === undefined ? '' : ` ${storm.note}`}`,
      `B's publish latency before the replays: ${spreadText(spread(quiet.map((sample) => sample.ms)))} (${quiet.length} publishes); ` +
        `during them: ${spreadText(latency)} over ${during.length} publishes, ${failed} not 202, ${steady.skipped} not sent (${STEADY_RATE}/s offered).`,
      `A's RSS ${mib(rssBefore)} before, peak ${mib(Math.max(peakRss, a.peakRssBytes()))} (VmHWM) during the replays.`,
      `Replays: ${completion}; a client's last event came after ${done.length === 0 ? '–' : `${seconds(Math.min(...done))} (first) to ${seconds(Math.max(...done))} (last)`}; ` +
        `${(gigabytes).toFixed(2)} GB delivered (${(gigabytes / ((ended - started) / 1000)).toFixed(2)} GB/s). CPU meanwhile: ${cpuText(cores)}.`
    ]
  }
}

function streamPath (storm: Storm): string {
  return `/v1/stream?${Array.from({ length: storm.topics }, (_, index) => `topic=${storm.name}-${index}`).join('&')}&lastEventId=0`
}

/**
 * The same resume from clients that never read a byte: what A holds for them meanwhile. Each also holds ~4 MB of
 * the host's kernel memory (see never-readers.ts), so at most as many as fit in half its no-pressure TCP memory.
 */
async function measureNeverReading (lab: Lab, storm: Storm): Promise<{ line: string, details: string[] }> {
  const count = Math.min(storm.clients, neverReaderRoom(0.5))
  if (count < 10) throw new Error(`the host's TCP memory has room for ${count} never-reading streams only`)
  const redis = await lab.redis()
  await fill(redis.url, storm)
  const a = await lab.herald({ REDIS_URL: redis.url })
  const rssBefore = a.rssBytes()
  const sockets = Array.from({ length: count }, () => neverReadingStream(a.port, streamPath(storm)))
  lab.defer(() => { for (const socket of sockets) socket.destroy() })
  const opened = now()
  let subscribed = 0
  let peak = 0
  while (now() - opened < NEVER_READING_WATCH_MS) {
    await sleep(250)
    peak = Math.max(peak, a.rssBytes())
    subscribed = Math.max(subscribed, (await heraldHealth(a.url)).subscriptions)
  }
  const held = a.rssBytes() - rssBefore
  if (subscribed < count) throw new Error(`only ${subscribed} of ${count} never-reading resumes were subscribed`)
  const line = `${count} never-reading resumes (${storm.topics}×${storm.eventsPerTopic}×${storm.eventBytes / 1000} KB): A holds +${mib(held)} (~${(held / count / 2 ** 20).toFixed(1)} MiB each) after ${seconds(NEVER_READING_WATCH_MS)}`
  return {
    line,
    details: [
      `**${count} resumes that never read** (raw sockets that send \`GET /v1/stream?topic=…×${storm.topics}&lastEventId=0\` and read nothing) on ${storm.topics} topics × ${storm.eventsPerTopic} events × ${storm.eventBytes.toLocaleString('en')} bytes: ` +
        `A's RSS ${mib(rssBefore)} before, ${mib(a.rssBytes())} after ${seconds(NEVER_READING_WATCH_MS)} (peak ${mib(Math.max(peak, a.peakRssBytes()))}): **+${mib(held)}, ~${(held / count / 2 ** 20).toFixed(1)} MiB per request, held until each is reset** ` +
        '(the stall timeout, 30 s, checked on the 15 s heartbeat; test/stalled-client.test.ts). A page is ~100 events whatever their size (here 6 MB): the replay keeps the whole page ' +
        '(its events stay referenced until the page is sent) while it waits for the client to drain, and none of it counts against HERALD_MAX_QUEUE_BYTES. ' +
        'With the default HERALD_MAX_STREAMS_PER_ADDRESS (1,000) one address could so make an instance hold ~6 GB.'
    ]
  }
}

export const replayStorm: Finding = {
  number: 1,
  title: 'One anonymous request could stall Redis for every instance (resume with lastEventId=0 on many topics)',
  before: 'B\'s publishes blocked up to 28 s, Herald ~780 MB (4×1,000×60 KB, 20 requests); chat case (32×1,000×1 KB, 50 requests) publishes stalled up to 5.6 s',
  limitSeconds: 260,
  measure: async (lab) => {
    const lines: string[] = []
    const details: string[] = []
    for (const storm of STORMS) {
      // Each size on fresh processes, so A's peak RSS is that size's own.
      const measured = await lab.part(async (part) => await measureStorm(part, storm))
      lines.push(measured.line)
      details.push(...measured.details)
    }
    const idle = await lab.part(async (part) => await measureNeverReading(part, NEVER_READING))
    lines.push(idle.line)
    details.push(...idle.details)
    return { figures: lines.join(' | '), details }
  }
}
