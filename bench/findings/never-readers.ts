import type { Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { until } from '../../test/helper.js'
import { openStreams, waitFor, warmUp } from '../scenarios.js'
import { neverReadingStream, now, type Sink, tallySequence } from '../sse-client.js'
import { cpuMeter, cpuText, establishedSockets, neverReaderRoom, PAGE_BYTES, socketBufferSizes, tcpMemoryLimits, tcpMemoryPages } from './host.js'
import { heraldHealth, type Finding } from './lab.js'
import { PacedPublisher } from './paced-publisher.js'
import { mib, seconds, spread, spreadText } from './stats.js'

const WANTED = 5_000
const READERS = 100
const RATE = 100
const PAD = 'x'.repeat(4_000)
const TOPIC = 'firehose'
/** Never-readers come from 127.0.1.x, at most this many per address (under the default per-address cap of 1,000). */
const PER_ADDRESS = 900
const NEVER_READERS_NET = '127.0.1.0/24'
/** The share of the host's no-pressure TCP memory (tcp_mem low) this scenario may fill: the kernel is shared. */
const HOST_SHARE = 0.9

/**
 * Streams that never read, while 100 × 4 KB events/s go to everyone: how the reading clients fare, how soon the
 * never-readers are reset and their sockets gone, and what the host's TCP memory does meanwhile.
 *
 * On loopback (64 KB MSS) the kernel grows each connection's send buffer towards tcp_wmem's maximum (4 MB) at
 * once, and Node cannot set SO_SNDBUF: every never-reader holds ~4 MB of kernel memory before Herald sees any
 * backlog. That memory is the host's, shared with everything else on it (tcp_mem is host-wide), so this scenario
 * opens only as many never-readers as fit under the host's no-pressure threshold, and says how many that was.
 */
export const neverReaders: Finding = {
  number: 5,
  title: 'Clients that never read, under 100 × 4 KB events/s',
  before: '5,000 never-readers: others\' p99 6 ms → 4.7 s, dropped sockets kept their kernel buffers, the host hit its TCP memory limit',
  limitSeconds: 90,
  measure: async (lab) => {
    const limits = tcpMemoryLimits()
    const buffers = socketBufferSizes()
    const perSocket = buffers.sendMax + buffers.receiveDefault
    const memoryAtStart = tcpMemoryPages()
    const room = neverReaderRoom(HOST_SHARE)
    const count = Math.min(WANTED, room)
    if (count < 20) throw new Error(`the host's TCP memory has room for ${room} never-reading sockets only (tcp_mem ${limits.low}/${limits.pressure}/${limits.hard} pages, ${memoryAtStart} in use)`)

    const redis = await lab.redis()
    const herald = await lab.herald({ REDIS_URL: redis.url, LOG_LEVEL: 'info' })
    const sink: Sink = { latencies: undefined }
    const readers = await openStreams(herald.port, Array.from({ length: READERS }, () => `/v1/stream?topic=${TOPIC}`), sink, 30_000)
    lab.defer(() => { for (const reader of readers) reader.close() })
    const publisher = new PacedPublisher(herald.port, RATE, (seq) => JSON.stringify({ topic: TOPIC, data: { seq, t: now(), pad: PAD } }))
    lab.defer(async () => await publisher.stop())
    await warmUp(readers, () => TOPIC, async (topic, data) => await fetch(`${herald.url}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ topic, data }) }))
    for (const reader of readers) reader.seqs.length = 0

    const processes = { Herald: herald.pid, Redis: redis.pid }
    const baseline: number[] = []
    sink.latencies = baseline
    publisher.start()
    const baselineCpu = cpuMeter(processes)
    await sleep(3_000)
    const baselineCores = baselineCpu()

    const during: number[] = []
    sink.latencies = during
    const opening = now()
    const sockets: Socket[] = []
    lab.defer(() => { for (const socket of sockets) socket.destroy() })
    for (let index = 0; index < count; index++) sockets.push(neverReadingStream(herald.port, `/v1/stream?topic=${TOPIC}`, `127.0.1.${1 + Math.floor(index / PER_ADDRESS)}`))
    await until(async () => (await heraldHealth(herald.url)).subscriptions >= READERS + count, 30_000, `${count} never-readers subscribed`)
    const subscribedAt = now()
    const openingMs = subscribedAt - opening
    const duringCpu = cpuMeter(processes)

    let peakPages = tcpMemoryPages()
    let firstResetAt = 0
    let goneAt = 0
    let guard = ''
    await waitFor(() => {
      const pages = tcpMemoryPages()
      peakPages = Math.max(peakPages, pages)
      // The host is shared: never push it into TCP memory pressure.
      if (pages > 0.97 * limits.pressure && guard === '') {
        guard = `the host's TCP memory reached ${pages} pages (pressure at ${limits.pressure}): the never-readers were closed by the script`
        for (const socket of sockets) socket.destroy()
      }
      const held = establishedSockets(herald.port, 'server', NEVER_READERS_NET)
      if (held < count && firstResetAt === 0) firstResetAt = now()
      if (held === 0) goneAt = now()
      return goneAt > 0
    }, 45_000, 'the never-readers to be reset').catch(() => {})
    const duringCores = duringCpu()
    const heldAtEnd = establishedSockets(herald.port, 'server', NEVER_READERS_NET)
    const clientSideHeld = establishedSockets(herald.port, 'client', NEVER_READERS_NET)
    const memoryAfter = tcpMemoryPages()

    const after: number[] = []
    sink.latencies = after
    await sleep(2_000)
    await publisher.stop()
    const accepted = publisher.samples.filter((sample) => sample.status === 202).map((sample) => sample.seq).sort((x, y) => x - y)
    await waitFor(() => readers.every((reader) => reader.seqs.length >= accepted.length), 10_000, 'the readers to catch up').catch(() => {})
    let lost = 0
    let duplicated = 0
    for (const reader of readers) {
      const counts = tallySequence(reader.seqs, accepted)
      lost += counts.lost
      duplicated += counts.duplicated + counts.outOfOrder
    }
    const readersCut = readers.filter((reader) => reader.closed).length

    const closes = herald.output().split('\n').filter((line) => line.includes('"msg":"stream closed"')).map((line) => JSON.parse(line) as { reason: string, queuedBytes?: number, durationMs: number })
    const reasons = new Map<string, number>()
    for (const close of closes) reasons.set(close.reason, (reasons.get(close.reason) ?? 0) + 1)
    const dropped = closes.filter((close) => close.reason === 'slow-client' || close.reason === 'stalled')
    const heldInHerald = Math.max(0, ...dropped.map((close) => close.queuedBytes ?? 0))
    const peakMiB = (peakPages - memoryAtStart) * PAGE_BYTES / 2 ** 20
    const resetAfter = goneAt > 0 ? seconds(goneAt - subscribedAt) : `not all after ${seconds(now() - subscribedAt)} (${heldAtEnd} left)`
    const duringSpread = spread(during)
    const scale = count < WANTED ? ` (${count}, not ${WANTED.toLocaleString('en')}: what fits in the host's TCP memory, see below)` : ''
    return {
      figures: `${count} never-readers${scale}: readers' p50/p99 ${spread(baseline).p50.toFixed(1)}/${spread(baseline).p99.toFixed(1)} ms → ${duringSpread.p50.toFixed(1)}/${duringSpread.p99.toFixed(1)} ms, ${lost} lost; ` +
        `never-readers reset and their server sockets gone ${resetAfter} after subscribing; host TCP memory peak +${peakMiB.toFixed(0)} MiB (~${(peakMiB / count).toFixed(1)} MiB each), back to +${((memoryAfter - memoryAtStart) * PAGE_BYTES / 2 ** 20).toFixed(0)} MiB`,
      details: [
        `${READERS} reading clients and ${count} never-reading streams (raw sockets that send the GET and never read, from 127.0.1.x) on one topic; ${RATE} events/s of ${PAD.length.toLocaleString('en')} bytes published through Herald (Redis broker, default caps: HERALD_MAX_QUEUE_BYTES 1 MiB, HERALD_STALL_TIMEOUT_MS 30 s).`,
        `Why ${count}${count < WANTED ? ` and not ${WANTED.toLocaleString('en')}` : ''}: each never-reader can hold up to tcp_wmem max + tcp_rmem default = ${mib(perSocket)} of kernel memory before any backlog reaches Herald (loopback's 64 KB MSS lets the send buffer grow at once; Node cannot set SO_SNDBUF). ` +
          `The host's tcp_mem is ${limits.low}/${limits.pressure}/${limits.hard} pages (${mib(limits.low * PAGE_BYTES)} / ${mib(limits.pressure * PAGE_BYTES)} / ${mib(limits.hard * PAGE_BYTES)}), host-wide and shared with other test runs, ${memoryAtStart} pages in use at the start: ` +
          `${count} × ${mib(perSocket)} fits under ${HOST_SHARE * 100}% of the no-pressure threshold. ${WANTED.toLocaleString('en')} would need ~${(WANTED * perSocket / 2 ** 30).toFixed(0)} GiB of kernel memory, far past the hard limit: that part is the host's to bound (a lower tcp_wmem max, as the README says), not Herald's.` +
          (guard === '' ? '' : ` **${guard}.**`),
        `Readers' delivery latency (publish → receive): ${spreadText(spread(baseline))} before the never-readers; ${spreadText(duringSpread)} while they filled and were reset; ${spreadText(spread(after))} after. ` +
          `${lost} events lost, ${duplicated} duplicated or out of order over ${readers.length} readers × ${accepted.length} events; ${readersCut} readers cut. ` +
          `CPU before the never-readers: ${cpuText(baselineCores)}; while they filled: ${cpuText(duringCores)}.`,
        `Never-readers: all subscribed ${seconds(openingMs)} after the first connect; first reset ${firstResetAt === 0 ? '–' : seconds(firstResetAt - subscribedAt)} after, ` +
          `all server-side sockets gone (\`ss\` ESTABLISHED on the server port from ${NEVER_READERS_NET}: ${heldAtEnd} at the end, client side ${clientSideHeld}) ${resetAfter} after. ` +
          `Herald's log: ${[...reasons].map(([reason, number]) => `${number} × \`stream closed\` ${reason}`).join(', ')}; at most ${mib(heldInHerald)} queued in Herald for a dropped client (cap 1 MiB).`,
        `Host TCP memory (/proc/net/sockstat): ${memoryAtStart} pages at the start, peak ${peakPages} (+${peakMiB.toFixed(0)} MiB, ${(peakMiB / count).toFixed(2)} MiB per never-reader), ${memoryAfter} once they were reset (the never-readers' own client-side receive buffers stay until this process closes them). ` +
          `Herald's peak RSS ${mib(herald.peakRssBytes())}.`
      ]
    }
  }
}
