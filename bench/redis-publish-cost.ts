// `tsx bench/redis-publish-cost.ts [publishes]`: Redis's own CPU per 100k publishes through the Function library
// (redis/herald.lua), next to a bare PUBLISH, on a redis-server it starts on a free port. Redis CPU is read from
// INFO cpu before and after, so what the machine does meanwhile changes little. Calls go 500 at a time (pipelined),
// as many instances publishing at once would send them.
import { Redis } from 'ioredis'
import { RedisServer } from '../test/helpers/redis-server.js'
import { functionLibrary, publishKeys } from '../src/transport/redis-functions.js'

const publishes = Number(process.argv[2] ?? 100_000)
const redis = await RedisServer.start()
const client = new Redis(redis.url)
const library = functionLibrary({ prefix: 'herald:', historySize: 1000, historyRetentionMs: 86_400_000, idempotencyTtlMs: 600_000 })
const data = JSON.stringify({ user: 'ada', text: 'hello world, a chat message of typical size' })

async function redisCpuSeconds (): Promise<number> {
  const info = await client.info('cpu')
  const read = (name: string): number => Number(new RegExp(`${name}:([0-9.]+)`).exec(info)?.[1] ?? 0)
  return read('used_cpu_user') + read('used_cpu_sys')
}

const cases: Array<[string, (index: number) => Promise<unknown>]> = [
  ['bare PUBLISH, 1000 channels', async (index) => await client.publish(`bare:${index % 1000}`, data)],
  ['FCALL publish, 1000 topics', async (index) => await client.fcall(library.publish, 2, ...publishKeys('herald:', `user/${index % 1000}`), data, 'message')],
  ['FCALL publish, 1 topic', async (index) => await client.fcall(library.publish, 2, ...publishKeys('herald:', 'chat'), data, 'message')]
]
try {
  for (const [label, call] of cases) {
    await client.flushall()
    await client.call('FUNCTION', 'LOAD', 'REPLACE', library.code)
    const before = await redisCpuSeconds()
    const started = performance.now()
    for (let index = 0; index < publishes; index += 500) {
      await Promise.all(Array.from({ length: Math.min(500, publishes - index) }, async (_, offset) => await call(index + offset)))
    }
    const seconds = (performance.now() - started) / 1000
    const cpu = await redisCpuSeconds() - before
    console.log(`${label}: Redis ${(cpu * 100_000 / publishes).toFixed(2)} CPU-s per 100k, ${Math.round(publishes / seconds)}/s`)
  }
} finally {
  client.disconnect()
  await redis.stop()
}
