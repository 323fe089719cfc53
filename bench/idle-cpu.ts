/**
 * `npx tsx bench/idle-cpu.ts [connections=10000] [seconds=60] [heartbeatMs=15000]`: what open, silent streams cost
 * Herald in CPU (heartbeats, timers, keep-alive) and memory. Starts a redis-server and Herald (its own process,
 * test/helpers/herald-process.ts), measures Herald's CPU (/proc) over `seconds` with no stream, then opens
 * `connections` streams on 100 topics and measures it again over `seconds`: the difference is the streams' cost.
 * A shorter heartbeat than the default shows the cost of one heartbeat write more clearly.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { HeraldProcess } from '../test/helpers/herald-process.js'
import { RedisServer } from '../test/helpers/redis-server.js'
import { cpuSecondsOf, raiseDescriptorLimit } from './processes.js'
import { openStreams } from './scenarios.js'

const [connections = 10_000, seconds = 60, heartbeatMs = 15_000] = process.argv.slice(2, 5).map(Number)
raiseDescriptorLimit()
const redis = await RedisServer.start()
const herald = await HeraldProcess.start({
  REDIS_URL: redis.url,
  HERALD_HEARTBEAT_MS: String(heartbeatMs),
  HERALD_MAX_CONNECTIONS: String(connections + 100),
  // Every stream comes from 127.0.0.1: the per-address cap would refuse them.
  HERALD_MAX_STREAMS_PER_ADDRESS: '0'
}, connections + 1000)
const pid = herald.pid as number

async function cpuShareOver (window: number): Promise<number> {
  const before = cpuSecondsOf(pid)
  await sleep(window * 1000)
  return (cpuSecondsOf(pid) - before) / window
}

try {
  await sleep(3_000)
  const empty = await cpuShareOver(seconds)
  const rssBefore = herald.rssBytes()
  const clients = await openStreams(herald.port, Array.from({ length: connections }, (_, index) => `/v1/stream?topic=idle-${index % 100}`), undefined, 120_000)
  try {
    await sleep(3_000)
    const rssAfter = herald.rssBytes()
    const busy = await cpuShareOver(seconds)
    const open = clients.filter((client) => client.connected && !client.closed).length
    const perConnection = (busy - empty) / open
    const writes = open * 1000 / heartbeatMs
    console.log(`${open} idle streams, heartbeat ${heartbeatMs} ms, ${seconds} s each: Herald ${(100 * empty).toFixed(2)}% of a core with none, ${(100 * busy).toFixed(2)}% with them; ` +
      `${(100 * perConnection * 10_000).toFixed(2)}% of a core per 10k streams, ${(1e6 * (busy - empty) / writes).toFixed(1)} µs per heartbeat write; ` +
      `RSS ${(rssBefore / 2 ** 20).toFixed(0)} -> ${(rssAfter / 2 ** 20).toFixed(0)} MiB, ${((rssAfter - rssBefore) / 1024 / open).toFixed(1)} KiB per stream`)
  } finally {
    for (const client of clients) client.close()
  }
} finally {
  await herald.kill()
  await redis.stop()
}
