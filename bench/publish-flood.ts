/**
 * How far publishes of 64 new topics each grow Redis: `senders` concurrent loops for `seconds` against an
 * in-process Herald on a fresh redis-server (no AOF), with Redis's maxmemory and Herald's rate limit as given.
 *   node --import tsx bench/publish-flood.ts [seconds=10] [senders=8] [maxmemory=0] [rateLimitPerMinute=0]
 */
import { Agent, request } from 'undici'
import { loadConfig } from '../src/config.js'
import { createLogger, createServer } from '../src/server.js'
import { RedisServer } from '../test/helpers/redis-server.js'

const [seconds = 10, senders = 8] = process.argv.slice(2, 4).map(Number)
const maxmemory = process.argv[4] ?? '0'
const rateLimit = process.argv[5] ?? '0'
const redis = await RedisServer.start()
const admin = redis.client()
await admin.config('SET', 'maxmemory', maxmemory)
await admin.config('SET', 'maxmemory-policy', 'noeviction')
const usedMb = async () => Number(/used_memory:(\d+)/.exec(await admin.info('memory'))?.[1]) / 1024 / 1024
const config = loadConfig({ LOG_LEVEL: 'silent', PORT: '0', HERALD_METRICS_PORT: '0', REDIS_URL: redis.url, HERALD_RATE_LIMIT_PER_MINUTE: rateLimit })
const app = await createServer(config, createLogger(config))
await app.listen({ host: '127.0.0.1', port: 0 })
const { port } = app.server.address() as { port: number }
const agent = new Agent({ connections: senders })
const before = await usedMb()
const statuses = new Map<string, number>()
const deadline = Date.now() + seconds * 1000
let counter = 0
await Promise.all(Array.from({ length: senders }, async () => {
  while (Date.now() < deadline) {
    const round = counter++
    const body = JSON.stringify({ topic: Array.from({ length: 64 }, (_, index) => `flood/${round}/${index}`), data: { n: round } })
    const response = await request(`http://127.0.0.1:${port}/v1/events`, { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json', host: 'localhost' }, body })
    const reply = await response.body.json() as { code?: string }
    const key = `${response.statusCode}${reply.code === undefined ? '' : ` ${reply.code}`}`
    statuses.set(key, (statuses.get(key) ?? 0) + 1)
  }
}))
const after = await usedMb()
console.log(`${seconds} s, ${senders} senders, maxmemory ${maxmemory}, rate limit ${rateLimit}/min: Redis used_memory ${before.toFixed(1)} MB -> ${after.toFixed(1)} MB; answers ${JSON.stringify(Object.fromEntries(statuses))}`)
await app.close()
await agent.close()
admin.disconnect()
await redis.stop()
