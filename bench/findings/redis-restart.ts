import { publishMany, until } from '../../test/helper.js'
import { judgeAcrossEpochs, type EpochVerdict } from '../../test/helpers/epoch-verdict.js'
import { RedisProxy } from '../../test/helpers/redis-proxy.js'
import { openStream, type StreamClient } from '../../test/helpers/sse-client.js'
import { heraldHealth, type Finding } from './lab.js'

/** Open streams per instance, and clients per instance that come back after the restart with an id from before it. */
const PER_INSTANCE = 50
const TOPIC = 'restart'

async function healthy (url: string): Promise<boolean> {
  return (await heraldHealth(url)).status === 'ok'
}

function total (verdicts: EpochVerdict[]): { lost: number, resetFirst: number, disordered: number, newReceived: number } {
  return {
    lost: verdicts.reduce((sum, verdict) => sum + verdict.silentlyLost, 0),
    resetFirst: verdicts.filter((verdict) => verdict.resetFirst).length,
    disordered: verdicts.filter((verdict) => !verdict.inOrder).length,
    newReceived: verdicts.reduce((sum, verdict) => sum + verdict.newReceived, 0)
  }
}

/**
 * test/epochs.test.ts at a larger scale, with Herald as processes: Redis without AOF is killed and started again
 * EMPTY under open streams on two instances; A's subscriber is held back (a proxy) until the new id counter has
 * passed the old position, B reconnects at once; then clients come back with ids from before the restart.
 */
export const redisRestart: Finding = {
  number: 2,
  title: 'Redis restarted empty under open streams and reconnecting clients',
  before: '50 of 70 new events dropped silently by an open stream; a client coming back with an old id got no reset',
  limitSeconds: 60,
  measure: async (lab) => {
    const redis = await lab.redis()
    const proxy = await RedisProxy.start(redis.port)
    lab.defer(async () => await proxy.close())
    const a = await lab.herald({ REDIS_URL: proxy.url })
    const b = await lab.herald({ REDIS_URL: redis.url })
    const streams: StreamClient[] = []
    lab.defer(() => { for (const stream of streams) stream.close() })
    for (const herald of [a, b]) {
      for (let index = 0; index < PER_INSTANCE; index++) streams.push(await openStream(`${herald.url}/v1/stream?topic=${TOPIC}`))
    }
    const open = [...streams]
    await until(async () => await healthy(a.url) && await healthy(b.url), 10_000, 'both instances healthy')
    const old = await publishMany(a.url, TOPIC, 50)
    await until(() => open.every((stream) => stream.events.length >= old.length), 10_000, 'every open stream to get the first 50 events')

    proxy.pause('subscriber', 'toRedis')
    await redis.kill()
    await redis.startProcess()
    await until(async () => await healthy(b.url), 15_000, 'B healthy again')
    const fresh = await publishMany(b.url, TOPIC, 70)
    proxy.resume('subscriber', 'toRedis')
    await until(async () => await healthy(a.url), 15_000, 'A healthy again')

    // Back with an id each had before the restart (spread over the old range), by header on A, by query on B.
    const back: StreamClient[] = []
    for (let index = 0; index < 2 * PER_INSTANCE; index++) {
      const id = old[(index * 7) % old.length] as string
      back.push(index % 2 === 0
        ? await openStream(`${a.url}/v1/stream?topic=${TOPIC}`, { 'last-event-id': id })
        : await openStream(`${b.url}/v1/stream?topic=${TOPIC}&lastEventId=${encodeURIComponent(id)}`))
    }
    streams.push(...back)
    await until(() => back.every((stream) => stream.events.length >= 1), 10_000, 'the clients that came back to hear something')
    const live = [...await publishMany(a.url, TOPIC, 5), ...await publishMany(b.url, TOPIC, 5)]
    const last = live.at(-1) as string
    await until(() => streams.every((stream) => stream.events.some((event) => event.id === last)), 10_000, 'every stream to get the last event').catch(() => {})

    const openVerdicts = open.map((stream) => judgeAcrossEpochs(stream.events, old, [...fresh, ...live]))
    const backVerdicts = back.map((stream) => judgeAcrossEpochs(stream.events, [], [...fresh, ...live]))
    const opened = total(openVerdicts)
    const returned = total(backVerdicts)
    const ended = open.filter((stream) => stream.ended()).length
    const oldComplete = openVerdicts.filter((verdict) => verdict.oldReceived === old.length).length
    const newComplete = openVerdicts.filter((verdict) => verdict.newReceived === fresh.length + live.length).length
    const backFirst = back.filter((stream) => stream.events[0]?.event === 'herald.reset' && JSON.parse(stream.events[0].data).reason === 'epoch-changed').length
    const deliveries = open.length * (old.length + fresh.length + live.length) + back.length * live.length
    return {
      figures: `${opened.lost + returned.lost} events lost silently of ${deliveries} due; ${opened.resetFirst}/${open.length} open streams and ${returned.resetFirst}/${back.length} returning clients got herald.reset epoch-changed before any new-epoch event`,
      details: [
        `${open.length} open streams (${PER_INSTANCE} on A, whose subscriber reached Redis through a proxy that held its reconnect; ${PER_INSTANCE} on B); ` +
          `${old.length} events published, Redis (no AOF) SIGKILLed and started again empty, ${fresh.length} events published through B (the new counter passes the old position), ` +
          `A's subscriber let through; then ${back.length} clients came back with an id from before the restart (${PER_INSTANCE} on A with Last-Event-ID, ${PER_INSTANCE} on B with ?lastEventId), and ${live.length} more events.`,
        `Open streams: ${opened.lost} events lost silently; ${opened.resetFirst}/${open.length} got herald.reset epoch-changed before the new epoch; ` +
          `${oldComplete}/${open.length} had all ${old.length} old events, ${newComplete}/${open.length} all ${fresh.length + live.length} new ones; ${opened.disordered} out of order or duplicated; ${ended} ended.`,
        `Returning clients: ${returned.lost} lost silently; ${backFirst}/${back.length} got herald.reset epoch-changed as their first event, then ${returned.newReceived} of ${back.length * live.length} live events; ${returned.disordered} out of order or duplicated.`,
        'Judged by test/helpers/epoch-verdict.ts (shared with test/epochs.test.ts): every event, or a reset first and then a gapless tail.'
      ]
    }
  }
}
