/**
 * What refused publishes do to everyone else: `senders` concurrent loops send a refused body for `seconds` (a
 * 47 KB body naming 6,000 topics, or a body over HERALD_MAX_BODY_BYTES) while one client publishes valid events
 * one after another; prints that client's publish latency. Herald (memory broker, silent logs) runs in a child
 * process of its own, so the senders do not share its event loop.
 *   node --import tsx bench/rejection-contention.ts [seconds=10] [senders=64]
 */
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { Agent, request } from 'undici'
import { loadConfig } from '../src/config.js'
import { createLogger, createServer } from '../src/server.js'

const config = loadConfig({ LOG_LEVEL: 'silent', PORT: '0', HERALD_METRICS_PORT: '0' })
if (process.argv[2] === 'serve') {
  const app = await createServer(config, createLogger(config))
  await app.listen({ host: '127.0.0.1', port: 0 })
  process.send?.((app.server.address() as { port: number }).port)
  process.on('disconnect', () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
} else {
  await measure()
}

async function measure (): Promise<void> {
  const [seconds = 10, senders = 64] = process.argv.slice(2, 4).map(Number)
  const server = fork(process.argv[1] as string, ['serve'], { execArgv: ['--import', 'tsx'] })
  const [port] = await once(server, 'message') as [number]
  const url = `http://127.0.0.1:${port}/v1/events`
  const headers = { 'content-type': 'application/json', host: 'localhost' }
  const refused: Record<string, string> = {
    '6,000 topics': JSON.stringify({ topic: Array.from({ length: 6000 }, (_, index) => `t${index}`), data: 1 }),
    'too large': JSON.stringify({ topic: 'a', data: 'x'.repeat(config.maxBodyBytes + 10) })
  }
  const quantile = (sorted: number[], q: number) => (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0).toFixed(1)

  for (const [label, body] of Object.entries(refused)) {
    const flood = new Agent({ connections: senders })
    const own = new Agent({ connections: 1 })
    const deadline = Date.now() + seconds * 1000
    let refusals = 0
    const latencies: number[] = []
    await Promise.all([
      ...Array.from({ length: senders }, async () => {
        while (Date.now() < deadline) {
          const response = await request(url, { method: 'POST', dispatcher: flood, headers, body })
          await response.body.dump()
          refusals++
        }
      }),
      (async () => {
        while (Date.now() < deadline) {
          const start = performance.now()
          const response = await request(url, { method: 'POST', dispatcher: own, headers, body: '{"topic":"other","data":1}' })
          await response.body.dump()
          latencies.push(performance.now() - start)
        }
      })()
    ])
    latencies.sort((a, b) => a - b)
    console.log(`${senders} senders of "${label}" for ${seconds} s: ${refusals} refused; another client's ${latencies.length} publishes p50 ${quantile(latencies, 0.5)} ms, p99 ${quantile(latencies, 0.99)} ms`)
    await flood.close()
    await own.close()
  }
  server.disconnect()
}
