import { EventSource } from 'eventsource'
import { setTimeout as sleep } from 'node:timers/promises'
import { publish, until } from '../../test/helper.js'
import { openStream, type StreamClient } from '../../test/helpers/sse-client.js'
import { now } from '../sse-client.js'
import type { Finding } from './lab.js'
import { seconds, spread } from './stats.js'

const SLOTS = 20
const TOPIC = 'retry'

interface Watched {
  source: EventSource
  refusals: Array<{ at: number, reason: string, retryMs: number }>
  firstMessageAt: number
}

/**
 * The instance full (HERALD_MAX_CONNECTIONS=20, held by 20 streams) when 20 `eventsource` clients (the npm
 * EventSource, which gives up on any non-200 answer as browsers do) connect; then the holders leave: how many
 * get through, and when.
 */
export const refusalRetry: Finding = {
  number: 7,
  title: 'A refused stream is retried by EventSource and then gets through',
  before: 'a 503 (connection cap) ended EventSource for good: the page stayed dead',
  limitSeconds: 60,
  measure: async (lab) => {
    const redis = await lab.redis()
    const herald = await lab.herald({ REDIS_URL: redis.url, HERALD_MAX_CONNECTIONS: String(SLOTS) })
    const holders: StreamClient[] = []
    lab.defer(() => { for (const holder of holders) holder.close() })
    for (let index = 0; index < SLOTS; index++) holders.push(await openStream(`${herald.url}/v1/stream?topic=${TOPIC}`))
    const watched: Watched[] = Array.from({ length: SLOTS }, () => {
      const entry: Watched = { source: new EventSource(`${herald.url}/v1/stream?topic=${TOPIC}`), refusals: [], firstMessageAt: 0 }
      entry.source.addEventListener('herald.unavailable', (event) => {
        const { reason, retryMs } = JSON.parse(event.data) as { reason: string, retryMs: number }
        entry.refusals.push({ at: now(), reason, retryMs })
      })
      entry.source.addEventListener('message', () => { if (entry.firstMessageAt === 0) entry.firstMessageAt = now() })
      return entry
    })
    lab.defer(() => { for (const entry of watched) entry.source.close() })
    await until(() => watched.every((entry) => entry.refusals.length >= 1), 15_000, 'every EventSource to be refused once')

    const freedAt = now()
    for (const holder of holders) holder.close()
    // An event every 100 ms: a client is through when its first one arrives.
    await until(async () => {
      await publish(herald.url, { topic: TOPIC, data: 'ping' })
      await sleep(100)
      return watched.every((entry) => entry.firstMessageAt > 0)
    }, 20_000, 'every EventSource to get through').catch(() => {})

    const through = watched.filter((entry) => entry.firstMessageAt > 0)
    const afterFreed = spread(through.map((entry) => entry.firstMessageAt - freedAt))
    // From its last refusal to its first event, beyond the delay that refusal asked for.
    const late: number[] = []
    for (const entry of through) {
      const last = entry.refusals.filter((refusal) => refusal.at < entry.firstMessageAt).at(-1)
      if (last !== undefined) late.push(entry.firstMessageAt - last.at - last.retryMs)
    }
    const refusals = watched.map((entry) => entry.refusals.length)
    const reasons = [...new Set(watched.flatMap((entry) => entry.refusals.map((refusal) => refusal.reason)))].join(', ')
    const delays = watched.flatMap((entry) => entry.refusals.map((refusal) => refusal.retryMs))
    const closed = watched.filter((entry) => entry.source.readyState === EventSource.CLOSED).length
    return {
      figures: `${through.length}/${SLOTS} EventSources got through after being refused; ${seconds(afterFreed.p50)} (p50) / ${seconds(afterFreed.max)} (max) after the slots freed, ` +
        `at most ${Math.max(...late).toFixed(0)} ms after the retry delay they were given`,
      details: [
        `${SLOTS} streams held the instance's ${SLOTS} slots (HERALD_MAX_CONNECTIONS=${SLOTS}); ${SLOTS} \`eventsource\` clients (npm eventsource, which gives up on a non-200 answer as browsers do) connected and were refused: ` +
          `${refusals.reduce((sum, count) => sum + count, 0)} refusals (${Math.min(...refusals)}–${Math.max(...refusals)} per client, reason ${reasons}), retry delays ${(Math.min(...delays) / 1000).toFixed(1)}–${(Math.max(...delays) / 1000).toFixed(1)} s (5 s jittered ±50%).`,
        `The holders then closed: ${through.length}/${SLOTS} EventSources got an event (${closed} gave up, readyState CLOSED); ` +
          `after the slots freed: ${seconds(afterFreed.p50)} p50, ${seconds(afterFreed.max)} max; each came back ${Math.min(...late).toFixed(0)} to ${Math.max(...late).toFixed(0)} ms after the delay its last refusal asked for (events published every 100 ms).`
      ]
    }
  }
}
