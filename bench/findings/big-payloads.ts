import { monitorEventLoopDelay } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { openStreams, waitFor, warmUp } from '../scenarios.js'
import { now, type Sink, SseFrameCounter, tallySequence } from '../sse-client.js'
import { cpuMeter, cpuText } from './host.js'
import type { Finding } from './lab.js'
import { PacedPublisher } from './paced-publisher.js'
import { mib, seconds, spread, spreadText } from './stats.js'

const HOT_RATE = 2_000
const HOT_SECONDS = 20
const HOT_BODY = JSON.stringify({ topic: 'hot', data: 'x'.repeat(60_000 - 2) })
const COLD_TOPICS = 10
const COLD_READERS = 100
const COLD_RATE = 20

interface PubsubClient {
  id: string
  name: string
  omem: number
}

function pubsubClients (list: string): PubsubClient[] {
  return list.split('\n').filter((line) => line.trim() !== '').map((line) => ({
    id: /(?:^| )id=(\d+)/.exec(line)?.[1] ?? '',
    name: /(?:^| )name=(\S*)/.exec(line)?.[1] ?? '',
    omem: Number(/(?:^| )omem=(\d+)/.exec(line)?.[1] ?? 0)
  }))
}

/**
 * 60 KB events at up to 2,000/s on one topic (one reading subscriber on it, so Herald's subscriber connection
 * receives them), while 100 readers on 10 other topics get 20 small events/s: whether Redis cuts Herald's
 * subscriber (client-output-buffer-limit pubsub, 32 MB hard / 8 MB for 60 s by default), whether Herald says so,
 * and what the other topics' latency does.
 */
export const bigPayloads: Finding = {
  number: 8,
  title: 'Big payloads at a high rate (60 KB × 2,000/s on one topic)',
  before: 'Redis disconnected Herald\'s subscriber (pub/sub output buffer limit) and Herald logged nothing; other topics\' p99 10 ms → 2.5 s',
  limitSeconds: 90,
  measure: async (lab) => {
    const redis = await lab.redis()
    const herald = await lab.herald({ REDIS_URL: redis.url, LOG_LEVEL: 'info' })
    const admin = redis.client()
    lab.defer(() => admin.disconnect())
    const sink: Sink = { latencies: undefined }
    const readers = await openStreams(herald.port, Array.from({ length: COLD_READERS }, (_, index) => `/v1/stream?topic=cold-${index % COLD_TOPICS}`), sink, 30_000)
    lab.defer(() => { for (const reader of readers) reader.close() })
    await warmUp(readers, (index) => `cold-${index % COLD_TOPICS}`, async (topic, data) => await fetch(`${herald.url}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ topic, data }) }))
    for (const reader of readers) reader.seqs.length = 0
    // The hot topic's one reader: raw bytes counted, no parsing; if Herald cuts it as slow, it comes back.
    const hotReaders: SseFrameCounter[] = [new SseFrameCounter(herald.port, '/v1/stream?topic=hot')]
    lab.defer(() => { for (const reader of hotReaders) reader.close() })
    const reconnect = setInterval(() => { if (hotReaders.at(-1)?.closed === true) hotReaders.push(new SseFrameCounter(herald.port, '/v1/stream?topic=hot')) }, 100)
    lab.defer(() => clearInterval(reconnect))

    const cold = new PacedPublisher(herald.port, COLD_RATE, (seq) => JSON.stringify({ topic: `cold-${seq % COLD_TOPICS}`, data: { seq, t: now() } }))
    lab.defer(async () => await cold.stop())
    const baseline: number[] = []
    sink.latencies = baseline
    cold.start()
    await sleep(3_000)

    const subscriberName = `herald-${herald.pid}-subscriber`
    const subscriberIds = new Set<string>()
    let maxOmem = 0
    const sampling = { on: true }
    const sampler = (async () => {
      while (sampling.on) {
        try {
          for (const client of pubsubClients(String(await admin.call('CLIENT', 'LIST', 'TYPE', 'pubsub')))) {
            if (client.name !== subscriberName) continue
            subscriberIds.add(client.id)
            maxOmem = Math.max(maxOmem, client.omem)
          }
        } catch {}
        await sleep(250)
      }
    })()
    lab.defer(async () => { sampling.on = false; await sampler })
    const hot = new PacedPublisher(herald.port, HOT_RATE, () => HOT_BODY, { connections: 8, maxInFlight: 32 })
    lab.defer(async () => await hot.stop())
    const lag = monitorEventLoopDelay({ resolution: 10 })
    lag.enable()
    const during: number[] = []
    sink.latencies = during
    const hotFrom = now()
    const cpu = cpuMeter({ Herald: herald.pid, Redis: redis.pid })
    hot.start()
    await sleep(HOT_SECONDS * 1000)
    const hotTo = now()
    const cores = cpu()
    await hot.stop()
    lag.disable()
    const after: number[] = []
    sink.latencies = after
    await sleep(3_000)
    sampling.on = false
    await sampler
    await cold.stop()

    const accepted = cold.samples.filter((sample) => sample.status === 202).map((sample) => sample.seq).sort((x, y) => x - y)
    await waitFor(() => readers.every((reader, index) => reader.seqs.length >= accepted.filter((seq) => seq % COLD_TOPICS === index % COLD_TOPICS).length), 10_000, 'the cold readers to catch up').catch(() => {})
    let lost = 0
    for (const [index, reader] of readers.entries()) lost += tallySequence(reader.seqs, accepted.filter((seq) => seq % COLD_TOPICS === index % COLD_TOPICS)).lost

    const hotAccepted = hot.sentBetween(hotFrom, hotTo).filter((sample) => sample.status === 202).length
    const hotFailed = hot.samples.filter((sample) => sample.status !== 202).length
    const hotDelivered = hotReaders.reduce((sum, reader) => sum + reader.frames, 0)
    const hotBytes = hotReaders.reduce((sum, reader) => sum + reader.bytes, 0)
    const lines = herald.output().split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as { level: number, msg: string, connection?: string, reason?: string })
    const subscriberWarnings = lines.filter((line) => line.level >= 40 && line.msg.includes('subscriber'))
    const restored = lines.filter((line) => line.msg === 'Redis connection restored' && line.connection === 'subscriber').length
    const hotCut = lines.filter((line) => line.msg === 'stream closed' && (line.reason === 'slow-client' || line.reason === 'stalled')).length
    const disconnects = Math.max(0, subscriberIds.size - 1)
    const acceptedRate = hotAccepted / HOT_SECONDS
    const baselineSpread = spread(baseline)
    const duringSpread = spread(during)
    const verdict = disconnects === 0
      ? 'Redis kept Herald\'s subscriber'
      : `Redis cut Herald's subscriber ${disconnects} time(s), Herald logged ${subscriberWarnings.length} warn line(s)`
    return {
      figures: `${acceptedRate.toFixed(0)} events/s of 60 KB accepted (${HOT_RATE}/s offered; ${(acceptedRate * 60_000 / 1e6).toFixed(0)} MB/s); ${verdict} (peak output buffer ${mib(maxOmem)}); ` +
        `other topics' p50/p99 ${baselineSpread.p50.toFixed(1)}/${baselineSpread.p99.toFixed(1)} ms → ${duringSpread.p50.toFixed(1)}/${duringSpread.p99.toFixed(1)} ms, ${lost} lost`,
      details: [
        `Hot topic: ${HOT_RATE}/s of ${HOT_BODY.length.toLocaleString('en')}-byte publishes offered for ${HOT_SECONDS} s, open loop on 8 pipelined keep-alive connections (at most 32 unanswered each; ${hot.skipped} not sent because of that): ` +
          `${hotAccepted} accepted in the window (${acceptedRate.toFixed(0)}/s, the most this machine sustained with everything on its 2 cores), ${hotFailed} not 202. ` +
          `CPU meanwhile: ${cpuText(cores)}. Its reader got ${hotDelivered} events (${(hotBytes / 1e9).toFixed(2)} GB), was cut as slow ${hotCut} time(s) and came back (${hotReaders.length - 1} reconnects).`,
        `Herald's subscriber connection (CLIENT LIST TYPE pubsub every 250 ms): ${subscriberIds.size} connection id(s) seen, so ${disconnects} disconnect(s); peak output buffer (omem) ${mib(maxOmem)} against the default limit of 32 MB hard, 8 MB for 60 s. ` +
          `Herald's log: ${subscriberWarnings.length} warn line(s) about the subscriber${subscriberWarnings[0] === undefined ? '' : ` ("${subscriberWarnings[0].msg}")`}, ${restored} "Redis connection restored".`,
        `Other topics (${COLD_READERS} readers on ${COLD_TOPICS} topics, ${COLD_RATE} events/s): ${spreadText(baselineSpread)} before; ${spreadText(duringSpread)} during the hot load; ${spreadText(spread(after))} in the ${seconds(3_000)} after; ` +
          `${lost} of ${accepted.length * (COLD_READERS / COLD_TOPICS)} deliveries lost. This process's own event-loop delay during the load (it reads and publishes too): p99 ${(lag.percentile(99) / 1e6).toFixed(0)} ms, max ${(lag.max / 1e6).toFixed(0)} ms.`
      ]
    }
  }
}
