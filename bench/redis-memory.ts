/**
 * `npx tsx bench/redis-memory.ts`: Redis memory per topic and per idempotency key, on a redis-server it starts.
 * Publishes one small event to each of 10k topics (INFO memory used_memory before and after), then measures
 * MEMORY USAGE of a topic's history with 1, 10, 100 and 1000 small events, and of an idempotency record.
 */
import { Redis } from 'ioredis'
import { RedisTransport } from '../src/transport/redis.js'
import { RedisServer } from '../test/helpers/redis-server.js'

const TOPICS = 10_000
const server = await RedisServer.start()
const publisher = new Redis(server.url)
const subscriber = new Redis(server.url)
const admin = server.client()
try {
  const transport = new RedisTransport(publisher, subscriber, { prefix: 'm:', historySize: 1000, historyRetentionMs: 86_400_000, idempotencyTtlMs: 600_000 })
  const used = async () => Number(/used_memory:(\d+)/.exec(await admin.info('memory'))?.[1])
  const data = JSON.stringify({ user: 'ada', text: 'hello there' })
  await transport.publish({ topics: ['warm-up'], data })
  const before = await used()
  for (let index = 0; index < TOPICS; index += 100) {
    await Promise.all(Array.from({ length: 100 }, async (_, offset) => await transport.publish({ topics: [`user/${index + offset}`], data })))
  }
  const after = await used()
  console.log(`${TOPICS} topics with 1 event each: used_memory +${after - before} bytes, ${((after - before) / TOPICS).toFixed(0)} bytes per topic`)
  for (const count of [1, 10, 100, 1000]) {
    const topic = `n${count}`
    for (let index = 0; index < count; index++) await transport.publish({ topics: [topic], data })
    console.log(`history of ${count} event(s) of ${data.length} bytes: MEMORY USAGE ${await admin.memory('USAGE', `m:{${topic}}:h`, 'SAMPLES', 0)} bytes`)
  }
  const idemBefore = await used()
  for (let index = 0; index < TOPICS; index += 100) {
    await Promise.all(Array.from({ length: 100 }, async (_, offset) => await transport.publish({ topics: ['idem'], data, idempotencyKey: `order-${index + offset}` })))
  }
  const idemAfter = await used()
  console.log(`idempotency record: MEMORY USAGE ${await admin.memory('USAGE', 'm:{idem}:i:order-17')} bytes; ${TOPICS} keys (and their events in one 1000-event history): used_memory +${idemAfter - idemBefore} bytes`)
  console.log(`a topic's state (epoch, counter, boot token): MEMORY USAGE ${await admin.memory('USAGE', 'm:{n1}:m')} bytes`)
} finally {
  for (const client of [publisher, subscriber, admin]) client.disconnect()
  await server.stop()
}
