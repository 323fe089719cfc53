/**
 * `npm run bench`: Herald (memory and Redis brokers) against the seed recipe and nginx+Nchan, same scenarios,
 * same machine, one run. The server under test is pinned to core 0; this process (load and publishing) and
 * Redis to core 1. Flags: --quick, --runs N, --scenario a,b,c,d, --systems herald-memory,herald-redis,seed,nchan
 */
import { spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { Agent, request } from 'node:http'
import { cpus } from 'node:os'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort, httpReady, Managed, nchanAvailable, startNchan, startPinned, startRedis, versionOf } from './processes.js'
import { now, SseLoadClient, tallySequence } from './sse-load.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const SERVER_CORE = 0
const LOAD_CORE = 1

type SystemName = 'herald-memory' | 'herald-redis' | 'seed' | 'nchan'

interface Running {
  server: Managed
  redis?: Managed
}

interface System {
  name: SystemName
  start: () => Promise<Running>
  streamPath: (topic: string) => string
  publishRequest: (topic: string, data: unknown) => { path: string, body: string }
}

const heraldEnv = { LOG_LEVEL: 'warn', HERALD_MAX_CONNECTIONS: '20000', HERALD_RATE_LIMIT_PER_MINUTE: '0' }

function herald (name: 'herald-memory' | 'herald-redis'): System {
  return {
    name,
    start: async () => {
      const redis = name === 'herald-redis' ? await startRedis(LOAD_CORE) : undefined
      const port = await freePort()
      const env: Record<string, string> = { ...heraldEnv, PORT: String(port) }
      if (redis !== undefined) env.REDIS_URL = `redis://127.0.0.1:${redis.port}`
      const server = await startPinned(name, SERVER_CORE, [process.execPath, 'dist/src/server.js'], env, port, async () => await httpReady(port, '/health'))
      return redis === undefined ? { server } : { server, redis }
    },
    streamPath: (topic) => `/v1/stream?topic=${topic}`,
    publishRequest: (topic, data) => ({ path: '/v1/events', body: JSON.stringify({ topic, data }) })
  }
}

const seed: System = {
  name: 'seed',
  start: async () => {
    const redis = await startRedis(LOAD_CORE)
    const port = await freePort()
    const server = await startPinned('seed', SERVER_CORE, [process.execPath, '--import', 'tsx', 'bench/baselines/seed-recipe.ts'],
      { PORT: String(port), REDIS_URL: `redis://127.0.0.1:${redis.port}` }, port, async () => await httpReady(port, '/health'))
    return { server, redis }
  },
  streamPath: (topic) => `/stream?topic=${topic}`,
  publishRequest: (topic, data) => ({ path: '/publish', body: JSON.stringify({ topic, data }) })
}

const nchan: System = {
  name: 'nchan',
  start: async () => ({ server: await startNchan(SERVER_CORE, `${root}bench/baselines/nchan/nginx.conf.template`) }),
  streamPath: (topic) => `/sub?topic=${topic}`,
  publishRequest: (topic, data) => ({ path: `/pub?topic=${topic}`, body: JSON.stringify(data) })
}

const agent = new Agent({ keepAlive: true, maxSockets: 32 })

async function post (port: number, path: string, body: string): Promise<number> {
  return await new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (response) => {
      response.resume()
      response.on('end', () => resolve(response.statusCode ?? 0))
    })
    req.on('error', () => resolve(0))
    req.end(body)
  })
}

function percentile (sorted: Float64Array, fraction: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))] as number
}

type Metrics = Record<string, number>

/** Opens subscribers, proves each is live with a warm-up event per topic, then publishes at a fixed rate. */
async function fanout (system: System, running: Running, topicCount: number, perTopic: number, rate: number, seconds: number): Promise<Metrics> {
  const port = running.server.port
  const latencies: number[] = []
  const topics = Array.from({ length: topicCount }, (_, index) => `bench-${index}`)
  const clients = topics.flatMap((topic) => Array.from({ length: perTopic }, () => ({ topic, client: new SseLoadClient(port, system.streamPath(topic), latencies) })))
  try {
    await waitFor(() => clients.every(({ client }) => client.connected), 30_000, 'subscribers to connect')
    await sleep(300)
    const warmDeadline = Date.now() + 20_000
    while (!clients.every(({ client }) => client.seqs.length > 0) && Date.now() < warmDeadline) {
      await Promise.all(topics.map(async (topic) => {
        const { path, body } = system.publishRequest(topic, { seq: -1, t: now() })
        await post(port, path, body)
      }))
      await sleep(200)
    }
    if (!clients.every(({ client }) => client.seqs.length > 0)) throw new Error('not every subscriber received the warm-up event')
    for (const { client } of clients) client.seqs.length = 0
    latencies.length = 0

    const total = Math.round(rate * seconds)
    const cpuBefore = running.server.cpuSeconds()
    const redisBefore = running.redis?.cpuSeconds() ?? 0
    const started = now()
    let failed = 0
    // One publish at a time, on schedule: concurrent requests could reach the server out of send order,
    // and then "out of order" would measure the publisher, not the server.
    for (let seq = 0; seq < total; seq++) {
      const due = started + (seq * 1000) / rate
      const wait = due - now()
      if (wait > 1) await sleep(wait)
      const topic = topics[seq % topics.length] as string
      const { path, body } = system.publishRequest(topic, { seq, t: now() })
      const status = await post(port, path, body)
      if (status < 200 || status >= 300) failed++
    }
    const expectedDeliveries = total * perTopic
    await waitFor(() => latencies.length >= expectedDeliveries, 10_000, 'deliveries').catch(() => {})
    const elapsed = (now() - started) / 1000
    const cpu = running.server.cpuSeconds() - cpuBefore
    const redisCpu = (running.redis?.cpuSeconds() ?? 0) - redisBefore

    let lost = 0
    let duplicated = 0
    let outOfOrder = 0
    for (const [index, { client }] of clients.entries()) {
      const topicIndex = Math.floor(index / perTopic)
      const expected: number[] = []
      for (let seq = topicIndex; seq < total; seq += topicCount) expected.push(seq)
      const counts = tallySequence(client.seqs, expected)
      lost += counts.lost
      duplicated += counts.duplicated
      outOfOrder += counts.outOfOrder
    }
    const sorted = Float64Array.from(latencies).sort()
    return {
      deliveriesPerSecond: latencies.length / elapsed,
      p50: percentile(sorted, 0.5),
      p90: percentile(sorted, 0.9),
      p99: percentile(sorted, 0.99),
      max: sorted.at(-1) ?? Number.NaN,
      lost,
      duplicated,
      outOfOrder,
      failedPublishes: failed,
      cpuPer100k: (cpu / Math.max(1, latencies.length)) * 100_000,
      redisCpuPer100k: (redisCpu / Math.max(1, latencies.length)) * 100_000,
      peakRssMiB: running.server.memory().peak / 2 ** 20
    }
  } finally {
    for (const { client } of clients) client.close()
    await sleep(300)
  }
}

/** Memory per idle connection: the server's RSS growth from `count` open, subscribed, silent streams. */
async function idle (system: System, running: Running, count: number): Promise<Metrics> {
  const port = running.server.port
  await sleep(500)
  const before = running.server.memory().rss
  const clients: SseLoadClient[] = []
  for (let index = 0; index < count; index++) {
    clients.push(new SseLoadClient(port, system.streamPath(`idle-${index % 100}`), undefined))
    if (index % 500 === 499) await sleep(20)
  }
  try {
    await waitFor(() => clients.every((client) => client.connected || client.closed), 60_000, 'idle connections')
    const open = clients.filter((client) => client.connected && !client.closed).length
    await sleep(2_000)
    const after = running.server.memory().rss
    return { connections: open, kibPerConnection: (after - before) / 1024 / Math.max(1, open), rssMiB: after / 2 ** 20 }
  } finally {
    for (const client of clients) client.close()
    await sleep(500)
  }
}

/** Publish throughput with no subscribers: `concurrency` keep-alive loops for `seconds`. */
async function publishOnly (system: System, running: Running, concurrency: number, seconds: number): Promise<Metrics> {
  const port = running.server.port
  const deadline = now() + seconds * 1000
  let accepted = 0
  let failed = 0
  const cpuBefore = running.server.cpuSeconds()
  const started = now()
  await Promise.all(Array.from({ length: concurrency }, async (_, worker) => {
    for (let seq = worker; now() < deadline; seq += concurrency) {
      const { path, body } = system.publishRequest(`pub-${seq % 10}`, { seq, t: now() })
      const status = await post(port, path, body)
      if (status >= 200 && status < 300) accepted++
      else failed++
    }
  }))
  const elapsed = (now() - started) / 1000
  return { acceptedPerSecond: accepted / elapsed, failed, cpuSeconds: running.server.cpuSeconds() - cpuBefore }
}

async function waitFor (check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] as number
}

interface Result {
  system: SystemName
  scenario: string
  runs: number
  metrics: Metrics
  note?: string
}

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      runs: { type: 'string' },
      scenario: { type: 'string', default: 'a,b,c,d' },
      systems: { type: 'string', default: 'herald-memory,herald-redis,seed,nchan' }
    }
  })
  const quick = values.quick === true
  const runs = Number(values.runs ?? (quick ? 1 : 3))
  const scenarios = new Set((values.scenario ?? '').split(','))
  const size = quick
    ? { subscribers: 200, seconds: 3, idle: 2_000, publishSeconds: 3, topics: 200 }
    : { subscribers: 1_000, seconds: 8, idle: 10_000, publishSeconds: 5, topics: 1_000 }

  // Keep the load on its own core, away from the server under test.
  spawnSync('taskset', ['-p', '-c', String(LOAD_CORE), String(process.pid)], { stdio: 'ignore' })
  const build = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' })
  if (build.status !== 0) throw new Error('npm run build failed')

  const all: Record<SystemName, System> = { 'herald-memory': herald('herald-memory'), 'herald-redis': herald('herald-redis'), seed, nchan }
  const systems = (values.systems ?? '').split(',').map((name) => all[name as SystemName]).filter((system) => system !== undefined)
  const results: Result[] = []
  const notes: string[] = []
  for (const system of systems) {
    if (system.name === 'nchan' && !nchanAvailable()) {
      notes.push('nchan skipped: install it with `apt-get install -y nginx libnginx-mod-nchan`')
      continue
    }
    const plan: Array<[string, (running: Running) => Promise<Metrics>]> = []
    if (scenarios.has('a')) {
      plan.push([`a: 1 topic x ${size.subscribers} subs @ 20/s`, async (running) => await fanout(system, running, 1, size.subscribers, 20, size.seconds)])
      plan.push([`a: 1 topic x ${size.subscribers} subs @ 100/s`, async (running) => await fanout(system, running, 1, size.subscribers, 100, size.seconds)])
    }
    if (scenarios.has('b')) plan.push([`b: ${size.topics} topics x 1 sub @ 500/s`, async (running) => await fanout(system, running, size.topics, 1, 500, size.seconds)])
    if (scenarios.has('c') && system.name !== 'seed') plan.push([`c: ${size.idle} idle connections`, async (running) => await idle(system, running, size.idle)])
    if (scenarios.has('c') && system.name === 'seed') notes.push(`seed skips c: one Redis connection per client, ${size.idle} clients would mean ${size.idle} Redis connections`)
    if (scenarios.has('d') && system.name !== 'seed' && system.name !== 'nchan') plan.push(['d: publish only', async (running) => await publishOnly(system, running, 32, size.publishSeconds)])
    for (const [scenario, measure] of plan) {
      const samples: Metrics[] = []
      for (let run = 0; run < runs; run++) {
        let running: Running
        try {
          running = await system.start()
        } catch (error) {
          notes.push(`${system.name} ${scenario}: could not start: ${(error as Error).message.split('\n')[0] ?? ''}`)
          break
        }
        try {
          process.stderr.write(`${system.name} ${scenario} run ${run + 1}/${runs}\n`)
          samples.push(await measure(running))
        } catch (error) {
          notes.push(`${system.name} ${scenario}: ${(error as Error).message}`)
        } finally {
          await running.server.stop()
          await running.redis?.stop()
        }
      }
      if (samples.length === 0) continue
      const metrics: Metrics = {}
      for (const key of Object.keys(samples[0] as Metrics)) metrics[key] = median(samples.map((sample) => sample[key] as number))
      results.push({ system: system.name, scenario, runs: samples.length, metrics })
    }
  }

  const machine = {
    date: new Date().toISOString(),
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    node: process.version,
    redis: versionOf('redis-server', ['--version']),
    nginx: nchanAvailable() ? versionOf('nginx', ['-v']) : 'not installed',
    quick,
    runs
  }
  const markdown = report(results, machine, notes)
  mkdirSync(`${root}bench/results`, { recursive: true })
  // Only a full default run replaces latest.*: a quick or partial run must not overwrite the published table.
  const partial = values.scenario !== 'a,b,c,d' || values.systems !== 'herald-memory,herald-redis,seed,nchan' || values.runs !== undefined
  const name = quick ? 'quick' : partial ? 'partial' : 'latest'
  writeFileSync(`${root}bench/results/${name}.json`, JSON.stringify({ machine, results, notes }, null, 2) + '\n')
  writeFileSync(`${root}bench/results/${name}.md`, markdown)
  console.log(JSON.stringify({ machine, results, notes }))
  console.log(markdown)
  agent.destroy()
}

function report (results: Result[], machine: Record<string, unknown>, notes: string[]): string {
  const fixed = (value: number | undefined, digits = 1) => value === undefined || Number.isNaN(value) ? '–' : value.toFixed(digits)
  const lines = [
    '# Herald benchmark',
    '',
    `${String(machine.date)} · ${String(machine.cpu)} · ${String(machine.cores)} cores · Node ${String(machine.node)} · ${String(machine.redis)} · ${String(machine.nginx)} · median of ${String(machine.runs)} run(s)${machine.quick === true ? ' · quick' : ''}`,
    '',
    'Server pinned to core 0; load generator and Redis to core 1. CPU is the server process (user+sys); Redis CPU is listed apart.',
    '',
    '| scenario | system | deliveries/s | p50 ms | p90 ms | p99 ms | max ms | lost | dup | out of order | server CPU s / 100k | Redis CPU s / 100k | peak RSS MiB |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
  ]
  for (const { system, scenario, metrics } of results.filter((result) => result.metrics.deliveriesPerSecond !== undefined)) {
    lines.push(`| ${scenario} | ${system} | ${fixed(metrics.deliveriesPerSecond, 0)} | ${fixed(metrics.p50, 2)} | ${fixed(metrics.p90, 2)} | ${fixed(metrics.p99, 2)} | ${fixed(metrics.max, 1)} | ${fixed(metrics.lost, 0)} | ${fixed(metrics.duplicated, 0)} | ${fixed(metrics.outOfOrder, 0)} | ${fixed(metrics.cpuPer100k, 3)} | ${fixed(metrics.redisCpuPer100k, 3)} | ${fixed(metrics.peakRssMiB, 0)} |`)
  }
  const idleRows = results.filter((result) => result.metrics.kibPerConnection !== undefined)
  if (idleRows.length > 0) {
    lines.push('', '| scenario | system | open connections | KiB per connection | RSS MiB |', '| --- | --- | ---: | ---: | ---: |')
    for (const { system, scenario, metrics } of idleRows) lines.push(`| ${scenario} | ${system} | ${fixed(metrics.connections, 0)} | ${fixed(metrics.kibPerConnection, 2)} | ${fixed(metrics.rssMiB, 0)} |`)
  }
  const publishRows = results.filter((result) => result.metrics.acceptedPerSecond !== undefined)
  if (publishRows.length > 0) {
    lines.push('', '| scenario | system | accepted events/s | failed | server CPU s |', '| --- | --- | ---: | ---: | ---: |')
    for (const { system, scenario, metrics } of publishRows) lines.push(`| ${scenario} | ${system} | ${fixed(metrics.acceptedPerSecond, 0)} | ${fixed(metrics.failed, 0)} | ${fixed(metrics.cpuSeconds, 2)} |`)
  }
  if (notes.length > 0) lines.push('', ...notes.map((note) => `- ${note}`))
  return lines.join('\n') + '\n'
}

await main()
