/**
 * What refusing a publish costs the server: a 47 KB body naming 6,000 topics (400) against a body over
 * HERALD_MAX_BODY_BYTES (413) and a valid one-topic publish (202). CPU time per request over app.inject (parsing,
 * hooks, validation, the error reply: what a sender makes the server do, with no client in the figure), and
 * wall time per request over HTTP on one keep-alive connection. Memory broker, silent logs.
 *   node --import tsx bench/rejection-cost.ts [requests]
 */
import { Agent, request } from 'undici'
import { loadConfig } from '../src/config.js'
import { createLogger, createServer } from '../src/server.js'

const requests = Number(process.argv[2] ?? 300)
const config = loadConfig({ LOG_LEVEL: 'silent', PORT: '0', HERALD_METRICS_PORT: '0' })
const app = await createServer(config, createLogger(config))
await app.listen({ host: '127.0.0.1', port: 0 })
const { port } = app.server.address() as { port: number }
const url = `http://127.0.0.1:${port}/v1/events`
const agent = new Agent({ connections: 1 })

const bodies: Record<string, string> = {
  '6,000 topics': JSON.stringify({ topic: Array.from({ length: 6000 }, (_, index) => `t${index}`), data: 1 }),
  'too large   ': JSON.stringify({ topic: 'a', data: 'x'.repeat(config.maxBodyBytes + 10) }),
  'valid       ': JSON.stringify({ topic: 'a', data: 1 })
}

const headers = { 'content-type': 'application/json', host: 'localhost' }
const quantile = (sorted: number[], q: number) => (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0).toFixed(2)

for (let round = 1; round <= 2; round++) {
  for (const [label, body] of Object.entries(bodies)) {
    const cpuBefore = process.cpuUsage()
    let status = 0
    for (let index = 0; index < requests; index++) status = (await app.inject({ method: 'POST', url: '/v1/events', headers, payload: body })).statusCode
    const cpu = process.cpuUsage(cpuBefore)
    const times: number[] = []
    let message = ''
    for (let index = 0; index < requests; index++) {
      const start = performance.now()
      const response = await request(url, { method: 'POST', dispatcher: agent, headers, body })
      message = (await response.body.text()).slice(0, 110)
      times.push(performance.now() - start)
    }
    times.sort((a, b) => a - b)
    const cpuMs = (cpu.user + cpu.system) / 1000 / requests
    console.log(`round ${round} ${label} ${(body.length / 1024).toFixed(1)} KB -> ${status}: CPU ${cpuMs.toFixed(2)} ms/request (inject); HTTP median ${quantile(times, 0.5)} ms, p90 ${quantile(times, 0.9)} ms  ${message}`)
  }
}
await app.close()
await agent.close()
