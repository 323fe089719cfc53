import { connect, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { publish, until } from '../../test/helper.js'
import { openStream, type StreamClient } from '../../test/helpers/sse-client.js'
import { loadConfig } from '../../src/config.js'
import { now } from '../sse-client.js'
import { waitFor } from '../scenarios.js'
import { establishedSockets } from './host.js'
import type { Finding, Lab } from './lab.js'
import { seconds, spread } from './stats.js'

const TOPIC = 'limits'

function refusal (stream: StreamClient): string | undefined {
  const event = stream.events.find((candidate) => candidate.event === 'herald.unavailable')
  return event === undefined ? undefined : (JSON.parse(event.data) as { reason: string }).reason
}

/** One address opens streams until it is refused (default cap); then another source address tries. */
async function perAddress (lab: Lab): Promise<{ line: string, details: string[] }> {
  const cap = loadConfig({}).maxStreamsPerAddress
  const redis = await lab.redis()
  const herald = await lab.herald({ REDIS_URL: redis.url })
  const streams: StreamClient[] = []
  lab.defer(() => { for (const stream of streams) stream.close() })
  const started = now()
  let refusedAt = 0
  while (refusedAt === 0 && streams.length < cap + 200) {
    streams.push(...await Promise.all(Array.from({ length: 50 }, async () => await openStream(`${herald.url}/v1/stream?topic=${TOPIC}`))))
    await sleep(100)
    if (streams.some((stream) => refusal(stream) !== undefined)) refusedAt = now()
  }
  await sleep(500)
  const accepted = streams.filter((stream) => !stream.ended() && refusal(stream) === undefined).length
  const reasons = new Map<string, number>()
  for (const stream of streams) {
    const reason = refusal(stream)
    if (reason !== undefined) reasons.set(reason, (reasons.get(reason) ?? 0) + 1)
  }
  const others = await Promise.all(Array.from({ length: 10 }, async () => await openStream(`${herald.url}/v1/stream?topic=${TOPIC}`, {}, { localAddress: '127.0.0.2' })))
  streams.push(...others)
  await sleep(300)
  const othersIn = others.filter((stream) => !stream.ended() && refusal(stream) === undefined).length
  const reply = await publish(herald.url, { topic: TOPIC, data: 'to everyone' })
  const heard = await Promise.all(others.map(async (stream) => await stream.waitForEvents(1, 5_000).then(() => true, () => false)))
  const reasonText = [...reasons].map(([reason, number]) => `${number} × ${reason}`).join(', ')
  return {
    line: `127.0.0.1 got ${accepted} streams (cap ${cap}) in ${seconds(refusedAt - started)}, then refused (${reasonText}); 127.0.0.2 got ${othersIn}/10`,
    details: [
      `One address (127.0.0.1) opened streams 50 at a time until one was refused: ${accepted} accepted (HERALD_MAX_STREAMS_PER_ADDRESS default ${cap}), ` +
        `refusals ${reasonText} (200 text/event-stream + herald.unavailable, so a browser retries), ${seconds(refusedAt - started)} to reach the cap.`,
      `Another source address (127.0.0.2) meanwhile: ${othersIn}/10 streams accepted; ${heard.filter(Boolean).length}/10 got the next event (publish ${reply.status}).`
    ]
  }
}

/** Idle connections (nothing sent) from one host past a socket cap: what is logged, when they are cut, and after. */
async function idleSockets (lab: Lab): Promise<{ line: string, details: string[] }> {
  // Below this machine's descriptor limit (20,000) for Herald and for this process.
  const cap = 10_000
  const flood = 11_000
  // Its own source address, so `ss` counts the flood alone (not this process's keep-alive health checks).
  const host = '127.0.0.3'
  // Twice the default: on a busy machine opening the flood can take longer than 10 s, and the first connections
  // would be cut before the last are open.
  const headersTimeoutMs = 20_000
  const redis = await lab.redis()
  const herald = await lab.herald({ REDIS_URL: redis.url, HERALD_MAX_SOCKETS: String(cap), HERALD_HEADERS_TIMEOUT_MS: String(headersTimeoutMs) })
  const sockets: Array<{ socket: Socket, openedAt: number, closedAt: number }> = []
  lab.defer(() => { for (const entry of sockets) entry.socket.destroy() })
  let pending = 0
  const started = now()
  for (let index = 0; index < flood; index++) {
    const entry = { socket: connect({ port: herald.port, host: '127.0.0.1', localAddress: host }), openedAt: now(), closedAt: 0 }
    pending++
    let settled = false
    const settle = (): void => {
      if (!settled) pending--
      settled = true
    }
    entry.socket.on('connect', settle)
    entry.socket.on('error', () => {})
    entry.socket.on('close', () => {
      settle()
      entry.closedAt = now()
    })
    sockets.push(entry)
    // No more than 500 handshakes in flight (the listen backlog).
    if (pending >= 500) await waitFor(() => pending < 250, 20_000, 'connections to settle')
  }
  await waitFor(() => pending === 0, 20_000, 'connections to settle')
  const floodedAt = now()
  await sleep(1_000)
  // Long before the headers timeout: whatever is closed now was refused at the cap.
  const droppedAtOnce = sockets.filter((entry) => entry.closedAt > 0).length
  const heldByServer = establishedSockets(herald.port, 'server', host)
  // A newcomer while the cap is reached.
  const during = await openStream(`${herald.url}/v1/stream?topic=${TOPIC}`).then((stream) => {
    stream.close()
    return `answered ${stream.status}`
  }, (error: Error) => `failed (${error.message})`)
  const warnings = herald.output().split('\n').filter((line) => line.includes('HERALD_MAX_SOCKETS'))

  await until(() => establishedSockets(herald.port, 'server', host) === 0, headersTimeoutMs + 15_000, 'the idle connections to be cut').catch(() => {})
  const cutAt = now()
  const leftOpen = establishedSockets(herald.port, 'server', host)
  const held = sockets.filter((entry) => entry.closedAt === 0 || entry.closedAt > floodedAt + 1_000)
  const lifetimes = spread(held.filter((entry) => entry.closedAt > 0).map((entry) => entry.closedAt - entry.openedAt))
  const stream = await openStream(`${herald.url}/v1/stream?topic=${TOPIC}`)
  lab.defer(() => stream.close())
  const reply = await publish(herald.url, { topic: TOPIC, data: 'after the flood' })
  const heard = await stream.waitForEvents(1, 5_000).then(() => now(), () => 0)
  const warned = warnings[0] === undefined ? undefined : JSON.parse(warnings[0]) as { level: number, msg: string, maxSockets: number, dropped: number }
  return {
    line: `${flood.toLocaleString('en')} idle connections against HERALD_MAX_SOCKETS=${cap.toLocaleString('en')}: ${heldByServer} held, ${droppedAtOnce} closed at once, ${warnings.length} warn line(s) "${warned?.msg ?? 'none'}"; ` +
      `idle ones cut after ${(lifetimes.p50 / 1000).toFixed(1)} s (headers timeout ${headersTimeoutMs / 1000} s); a new stream then ${stream.status === 200 && heard > 0 ? `worked (event ${(heard - cutAt).toFixed(0)} ms after the cut)` : 'FAILED'}`,
    details: [
      `${flood.toLocaleString('en')} TCP connections from one host (${host}) that send nothing, opened in ${seconds(floodedAt - started)} (at most 500 handshakes at once), against HERALD_MAX_SOCKETS=${cap.toLocaleString('en')} ` +
        `(not the default 20,000: this process needs a descriptor per connection too, and this machine allows 20,000) and HERALD_HEADERS_TIMEOUT_MS=${headersTimeoutMs.toLocaleString('en')} (twice the default, so the flood is all open before the first are cut): ` +
        `the server held ${heldByServer} (\`ss\`), ${droppedAtOnce} were closed at once; a stream asked for meanwhile ${during}.`,
      `Logged: ${warnings.length} line(s)${warned === undefined ? '' : `, level ${warned.level} (warn): "${warned.msg}" with dropped=${warned.dropped}`} (the first drop is logged at once, later ones at most every 10 s with the count since).`,
      `The idle connections were cut after ${(lifetimes.p50 / 1000).toFixed(1)} s (p50; max ${(lifetimes.max / 1000).toFixed(1)} s; HERALD_HEADERS_TIMEOUT_MS ${headersTimeoutMs.toLocaleString('en')}, checked every second); ${leftOpen} left open on the server ${seconds(cutAt - floodedAt)} after the flood was open.`,
      `Then a new stream answered ${stream.status} and got the next event (publish ${reply.status}) ${heard > 0 ? `${(heard - cutAt).toFixed(0)} ms after the last idle connection was cut` : '**never**'}.`
    ]
  }
}

/**
 * The issue's own case at a small scale: the default HERALD_MAX_SOCKETS (20,000) on a process whose open-file limit
 * is lower (here 1,000; on this machine the limit is 20,000, the default itself), flooded with idle connections.
 */
async function defaultCapOverTheLimit (lab: Lab): Promise<{ line: string, details: string[] }> {
  const openFiles = 1_000
  const flood = 1_200
  const host = '127.0.0.4'
  const redis = await lab.redis()
  const herald = await lab.herald({ REDIS_URL: redis.url, LOG_LEVEL: 'info' }, openFiles)
  const startNotice = herald.output().split('\n').find((line) => line.includes('open-file limit'))
  const cap = startNotice === undefined ? undefined : (JSON.parse(startNotice) as { cap: number }).cap
  const sockets: Array<{ socket: Socket, closed: boolean }> = []
  lab.defer(() => { for (const entry of sockets) entry.socket.destroy() })
  for (let index = 0; index < flood; index++) {
    const entry = { socket: connect({ port: herald.port, host: '127.0.0.1', localAddress: host }), closed: false }
    entry.socket.on('error', () => {})
    entry.socket.on('close', () => { entry.closed = true })
    sockets.push(entry)
  }
  await sleep(1_500)
  const held = establishedSockets(herald.port, 'server', host)
  const closed = sockets.filter((entry) => entry.closed).length
  const reached = herald.output().split('\n').filter((line) => line.includes('reached: new connections are closed')).length
  for (const entry of sockets) entry.socket.destroy()
  await until(() => establishedSockets(herald.port, 'server', host) === 0, 5_000, 'the flood to be gone').catch(() => {})
  const stream = await openStream(`${herald.url}/v1/stream?topic=${TOPIC}`)
  lab.defer(() => stream.close())
  const reply = await publish(herald.url, { topic: TOPIC, data: 'after' })
  const heard = await stream.waitForEvents(1, 5_000).then(() => true, () => false)
  return {
    line: `default cap with the open-file limit at ${openFiles.toLocaleString('en')}: ${cap === undefined ? '**not lowered, nothing said at start**' : `lowered to ${cap}, said at start`}; ${flood.toLocaleString('en')} idle: ${held} held, ${closed} closed at once with ${reached} warn line(s)`,
    details: [
      `The issue's own case, small: Herald with the default HERALD_MAX_SOCKETS (20,000) under an open-file limit of ${openFiles.toLocaleString('en')} (prlimit; this machine's own limit, 20,000, is the default cap itself). ` +
        (startNotice === undefined ? '**Nothing said at start.**' : `At start (info): "${(JSON.parse(startNotice) as { msg: string }).msg}".`),
      `${flood.toLocaleString('en')} idle connections from ${host}: ${held} held by the server, ${closed} closed at once, ${reached} \`HERALD_MAX_SOCKETS (…) reached\` warn line(s); ` +
        `once they left, a new stream answered ${stream.status} and ${heard ? 'got' : '**did not get**'} the next event (publish ${reply.status}). ` +
        'Before this was capped, the same Herald under a limit of 300 closed 128 of 400 connections with nothing logged, as in the issue.'
    ]
  }
}

export const clientLimits: Finding = {
  number: 6,
  title: 'Per-client limits: streams per address, sockets per instance',
  before: 'one client took all 10,000 stream slots in 5 s; ~20,000 idle connections from one host used up the descriptors and every new connection was reset for ~60 s, nothing logged',
  limitSeconds: 120,
  measure: async (lab) => {
    const streams = await lab.part(perAddress)
    const sockets = await lab.part(idleSockets)
    const overTheLimit = await lab.part(defaultCapOverTheLimit)
    return { figures: `${streams.line} | ${sockets.line} | ${overTheLimit.line}`, details: [...streams.details, ...sockets.details, ...overTheLimit.details] }
  }
}
