import { setTimeout as sleep } from 'node:timers/promises'
import { until } from '../../test/helper.js'
import { openStream, type StreamClient } from '../../test/helpers/sse-client.js'
import { now } from '../sse-client.js'
import { heraldHealth, type Finding } from './lab.js'
import { PacedPublisher } from './paced-publisher.js'
import { ms, spread, spreadText } from './stats.js'

const STOPPED_MS = 15_000
const PUBLISH_RATE = 5
const TOPIC = 'hung'

interface HealthAnswer {
  sentAt: number
  answeredAt: number
  status: string
}

/** Asks /health again 200 ms after each answer, as a balancer's check would (10 s timeout each). */
function pollHealth (url: string): { answers: HealthAnswer[], stop: () => Promise<void> } {
  const answers: HealthAnswer[] = []
  const polling = { on: true }
  const loop = (async () => {
    while (polling.on) {
      const sentAt = now()
      const { status } = await heraldHealth(url)
      answers.push({ sentAt, answeredAt: now(), status })
      await sleep(200)
    }
  })()
  return { answers, stop: async () => { polling.on = false; await loop } }
}

/** Redis stopped with SIGSTOP for 15 s (connections open, nothing answered) while publishes and health checks go on. */
export const hungRedis: Finding = {
  number: 4,
  title: 'A hung Redis (SIGSTOP for 15 s): publishes answer 503, /health says degraded',
  before: 'publishes hung for the whole stop, /health said ok throughout',
  limitSeconds: 60,
  measure: async (lab) => {
    const redis = await lab.redis()
    const herald = await lab.herald({ REDIS_URL: redis.url })
    const streams: StreamClient[] = []
    lab.defer(() => { for (const stream of streams) stream.close() })
    for (let index = 0; index < 3; index++) streams.push(await openStream(`${herald.url}/v1/stream?topic=${TOPIC}`))
    const publisher = new PacedPublisher(herald.port, PUBLISH_RATE, (seq) => JSON.stringify({ topic: TOPIC, data: { seq } }), { timeoutMs: 30_000 })
    lab.defer(async () => await publisher.stop())
    const health = pollHealth(herald.url)
    lab.defer(async () => await health.stop())
    publisher.start()
    await sleep(2_000)

    const stoppedAt = now()
    redis.pause()
    lab.defer(() => redis.resume())
    await sleep(STOPPED_MS)
    const resumedAt = now()
    redis.resume()
    await sleep(4_000)
    await publisher.stop()
    await health.stop()

    const answered = (sample: { sentAt: number, ms: number }) => sample.sentAt + sample.ms
    // Publishes sent while Redis was stopped and answered (or due) before it resumed.
    const during = publisher.samples.filter((sample) => sample.sentAt >= stoppedAt && sample.sentAt < resumedAt - 1_500)
    const first503 = Math.min(...publisher.samples.filter((sample) => sample.status === 503 && answered(sample) > stoppedAt).map(answered)) - stoppedAt
    const statuses = new Map<number, number>()
    for (const sample of during) statuses.set(sample.status, (statuses.get(sample.status) ?? 0) + 1)
    const slow = during.filter((sample) => sample.status === 0 || sample.ms > 3_000).length
    const firstDegraded = health.answers.find((answer) => answer.sentAt >= stoppedAt && answer.status === 'degraded')
    const degradedAfter = firstDegraded === undefined ? Number.NaN : firstDegraded.answeredAt - stoppedAt
    const okWhileStopped = health.answers.filter((answer) => firstDegraded !== undefined && answer.sentAt > firstDegraded.answeredAt && answer.answeredAt < resumedAt && answer.status === 'ok').length
    const healthSlowest = Math.max(...health.answers.filter((answer) => answer.sentAt >= stoppedAt && answer.sentAt < resumedAt).map((answer) => answer.answeredAt - answer.sentAt))
    const okAgain = health.answers.find((answer) => answer.sentAt >= resumedAt && answer.status === 'ok')
    const accepted202 = publisher.samples.find((sample) => sample.sentAt >= resumedAt && sample.status === 202)

    const accepted = publisher.samples.filter((sample) => sample.status === 202).length
    await until(() => streams.every((stream) => stream.events.length >= accepted), 5_000, 'every stream to get every accepted event').catch(() => {})
    const complete = streams.filter((stream) => stream.events.length >= accepted && new Set(stream.events.map((event) => event.id)).size === stream.events.length).length
    const open = streams.filter((stream) => !stream.ended()).length
    const latency = spread(during.map((sample) => sample.ms))
    const statusText = [...statuses].map(([status, count]) => `${count} × ${status === 0 ? 'no answer in 30 s' : status}`).join(', ')
    return {
      figures: `first 503 ${ms(first503)} ms after SIGSTOP, publishes meanwhile ${spreadText(latency)} (${statusText}); /health degraded after ${ms(degradedAfter)} ms, ok ${okWhileStopped} times while stopped`,
      details: [
        `Redis SIGSTOPped for ${STOPPED_MS / 1000} s under 3 open streams; publishes at ${PUBLISH_RATE}/s (pipelined on one keep-alive connection, 30 s client timeout); /health asked 200 ms after each answer.`,
        `First 503 answer ${ms(first503)} ms after the stop (command timeout HERALD_REDIS_COMMAND_TIMEOUT_MS = 1,000 ms). Publishes sent during the stop: ${during.length}, ${statusText}; ` +
          `latency ${spreadText(latency)}; ${slow} took over 3 s or got no answer.`,
        `/health: first \`degraded\` ${ms(degradedAfter)} ms after the stop; \`ok\` ${okWhileStopped} times after that while Redis was stopped; slowest health answer while stopped ${ms(healthSlowest)} ms.`,
        `After SIGCONT: /health ok again after ${okAgain === undefined ? '–' : ms(okAgain.answeredAt - resumedAt)} ms, first 202 after ${accepted202 === undefined ? '–' : ms(answered(accepted202) - resumedAt)} ms. ` +
          `${open}/3 streams stayed open; ${complete}/3 got every one of the ${accepted} accepted events (and those Redis ran late), no duplicate.`
      ]
    }
  }
}
