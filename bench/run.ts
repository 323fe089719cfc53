/**
 * `npm run bench`: Herald (memory and Redis brokers) against the seed recipe and nginx+Nchan, same scenarios,
 * same machine, one run. The server under test is pinned to core 0; this process (load and publishing) and
 * Redis to core 1. See bench/README.md for the flags and what each number means.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { killAllNow, NOFILE, prepareLoadGenerator, stopAll } from './processes.js'
import { machineInfo, markdown, type Result } from './report.js'
import { batchRequests, fanout, functionCalls, idle, type Metrics, publishOnly } from './scenarios.js'
import { DEFAULT_SYSTEMS, LOAD_CORE, root, type Running, stopRunning, SYSTEM_NAMES, type SystemName, systems } from './systems.js'

const USAGE = `usage: npm run bench -- [--quick] [--runs N] [--scenario a,b,c,d[,e,f,g,h,i]] [--systems ${SYSTEM_NAMES.join(',')}] [--time-limit MINUTES]\n       npm run bench -- --render bench/results/latest.json   (rewrite the .md from a saved .json)`
const DEFAULT_SCENARIOS = ['a', 'b', 'c', 'd']
/**
 * Opt-in (`--scenario …`): e, the design's 10k-subscriber fan-out target; f, a 3-master Redis Cluster beside one
 * Redis; g, h and i, publishing at volume (batches, and FCALL of the Function library from outside Herald).
 */
const ALL_SCENARIOS = [...DEFAULT_SCENARIOS, 'e', 'f', 'g', 'h', 'i']
/** The systems each opt-in scenario is for (a-e: every chosen system); Nchan runs b as the per-user baseline of h and i. */
const SCENARIO_SYSTEMS: Record<string, SystemName[]> = {
  f: ['herald-redis', 'herald-cluster'],
  g: ['herald-memory', 'herald-redis', 'herald-cluster'],
  h: ['herald-memory', 'herald-redis', 'herald-cluster', 'nchan'],
  i: ['herald-redis', 'nchan']
}

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    runs: { type: 'string' },
    scenario: { type: 'string' },
    systems: { type: 'string' },
    'time-limit': { type: 'string' },
    render: { type: 'string' },
    help: { type: 'boolean', default: false }
  }
})
if (values.help === true) {
  console.log(USAGE)
  process.exit(0)
}
if (values.render !== undefined) {
  const saved = JSON.parse(readFileSync(values.render, 'utf8')) as { machine: Parameters<typeof markdown>[1], results: Result[], notes: string[] }
  const report = markdown(saved.results, saved.machine, saved.notes)
  writeFileSync(values.render.replace(/\.json$/, '.md'), report)
  console.log(report)
  process.exit(0)
}
const quick = values.quick === true
const runs = Number(values.runs ?? (quick ? 1 : 3))
const scenarios = (values.scenario ?? DEFAULT_SCENARIOS.join(',')).split(',').map((name) => name.trim()).filter(Boolean)
// herald-cluster starts 3 more redis-servers: it joins a run by name, or for f (the scenario about it).
const chosen = (values.systems ?? [...DEFAULT_SYSTEMS, ...(scenarios.includes('f') ? ['herald-cluster'] : [])].join(',')).split(',').map((name) => name.trim()).filter(Boolean)
const badScenario = scenarios.find((name) => !ALL_SCENARIOS.includes(name))
const badSystem = chosen.find((name) => !SYSTEM_NAMES.includes(name as SystemName))
if (!Number.isInteger(runs) || runs < 1 || runs > 20 || badScenario !== undefined || badSystem !== undefined) {
  console.error(`bad arguments${badScenario === undefined ? '' : `: unknown scenario ${badScenario}`}${badSystem === undefined ? '' : `: unknown system ${badSystem}`}\n${USAGE}`)
  process.exit(2)
}
const timeLimitMinutes = Number(values['time-limit'] ?? (quick ? 4 : 5 + 7 * runs))

const size = quick
  ? { subscribers: 200, seconds: 3, topics: 200, idle: 2_000, publishSeconds: 2, publishWarmSeconds: 0.5 }
  : { subscribers: 1_000, seconds: 8, topics: 1_000, idle: 10_000, publishSeconds: 5, publishWarmSeconds: 1 }
const PUBLISH_CONNECTIONS = 4
const PUBLISH_DEPTH = 16
/** f's fan-out: this many topics (spread over the shards by their hash slots), the subscribers shared among them. */
const CLUSTER_FANOUT_TOPICS = 20
/** f's fan-out rate: 20 events/s per 1,000 subscribers… of one topic in a; here 400/s over 20 topics gives as many deliveries. */
const CLUSTER_FANOUT_RATE = 400
/** f's publishes go round-robin to this many topics, so the hash slots spread them over the shards as real traffic would. */
const CLUSTER_PUBLISH_TOPICS = 1_000
/** f's measured seconds, shorter than a's and d's (both f parts already run on two systems): fan-out, publish only. */
const clusterSeconds = quick ? { fanout: size.seconds, publish: size.publishSeconds } : { fanout: 5, publish: 3 }
/** g: batches of this many events, each to its own topic of as many. */
const BATCH_EVENTS = 100
/** g: batches in flight: connections × pipelined depth. */
const BATCH_CONNECTIONS = 2
const BATCH_DEPTH = 4
/** h and i: the per-user case of b, published this many events per request (h) or per pipeline of FCALLs (i). */
const PER_USER_GROUP = 50

// Cleanup: whatever happens, stop (by PID) the processes this run started, and nothing else.
let stopping = false
async function abort (why: string, code: number): Promise<never> {
  if (!stopping) {
    stopping = true
    process.stderr.write(`\nbench: ${why}; stopping the processes it started\n`)
    await Promise.race([stopAll(), new Promise((resolve) => setTimeout(resolve, 6_000))])
  }
  process.exit(code)
}
process.on('exit', killAllNow)
process.on('SIGINT', () => { abort('interrupted', 130).catch(() => {}) })
process.on('SIGTERM', () => { abort('terminated', 143).catch(() => {}) })
process.on('uncaughtException', (error) => { abort(`error: ${error.stack ?? error.message}`, 1).catch(() => {}) })
process.on('unhandledRejection', (error) => { abort(`error: ${String(error)}`, 1).catch(() => {}) })
const watchdog = setTimeout(() => { abort(`time limit of ${timeLimitMinutes} minutes reached`, 1).catch(() => {}) }, timeLimitMinutes * 60_000)
watchdog.unref()

process.chdir(root)
prepareLoadGenerator(LOAD_CORE)
const startedAt = Date.now()
const notes: string[] = []
const results: Result[] = []
/** Herald's own metrics after each scenario's last run: what /metrics says after real load. */
const scraped: string[] = []

/** The herald_* samples of an instance's /metrics (the process defaults left out). */
async function heraldMetrics (port: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5_000) })
  const text = await response.text()
  return text.split('\n').filter((line) => line.startsWith('herald_') && !/_bucket\{/.test(line)).join('\n')
}
const all = systems()

const wantsHerald = chosen.some((name) => name.startsWith('herald'))
if (wantsHerald) {
  const build = spawnSync('npm', ['run', 'build'], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 180_000 })
  if (build.status !== 0) {
    const dist = existsSync(`${root}dist/src/server.js`)
    notes.push(`npm run build failed${dist ? '; measured the existing dist/' : ' and there is no dist/: Herald skipped'}`)
    if (!dist) {
      all['herald-memory'].unavailable = 'npm run build failed'
      all['herald-redis'].unavailable = 'npm run build failed'
    }
  }
}

for (const name of chosen) {
  const system = all[name as SystemName]
  if (system.unavailable !== undefined) {
    notes.push(`${system.name} skipped: ${system.unavailable}`)
    process.stderr.write(`${system.name} skipped: ${system.unavailable}\n`)
    continue
  }
  const plan: Array<[string, string, (running: Running) => Promise<Metrics>]> = []
  // herald-cluster joins a run for f; it runs the other scenarios only when --systems names it.
  const wants = (scenario: string): boolean => scenarios.includes(scenario) &&
    (SCENARIO_SYSTEMS[scenario]?.includes(system.name) ?? true) &&
    (system.name !== 'herald-cluster' || scenario === 'f' || values.systems !== undefined)
  if (wants('a')) {
    for (const rate of [20, 100]) {
      plan.push([`a${rate}`, `a: 1 topic × ${size.subscribers} subs @ ${rate}/s`, async (running) => await fanout(system, running, 1, size.subscribers, rate, size.seconds)])
    }
  }
  // Nchan has no batch and no Redis Function: its per-user figure for h and i is b's, measured in the same run.
  if (wants('b') || (system.name === 'nchan' && (wants('h') || wants('i')))) {
    plan.push(['b', `b: ${size.topics} topics × 1 sub @ 500/s`, async (running) => await fanout(system, running, size.topics, 1, 500, size.seconds)])
  }
  // The seed recipe holds two descriptors per client (the client's socket and its own Redis connection).
  const many = system.name === 'seed' ? Math.min(size.idle, Math.floor((NOFILE - 256) / 2 / 1000) * 1000) : size.idle
  if (many < size.idle && (wants('c') || wants('e'))) {
    notes.push(`seed c/e: ${many} connections, not ${size.idle}: it needs 2 descriptors per client and the hard limit here is ${NOFILE}`)
  }
  if (wants('c')) plan.push(['c', `c: ${many} idle connections`, async (running) => await idle(system, running, many)])
  if (wants('d')) {
    plan.push(['d', `d: publish only, ${PUBLISH_CONNECTIONS} conns × ${PUBLISH_DEPTH} pipelined`, async (running) => await publishOnly(system, running, PUBLISH_CONNECTIONS, PUBLISH_DEPTH, size.publishSeconds, size.publishWarmSeconds)])
  }
  if (wants('e')) {
    plan.push(['e', `e: 1 topic × ${many} subs @ 5/s`, async (running) => await fanout(system, running, 1, many, 5, size.seconds)])
  }
  if (wants('f')) {
    plan.push(['f-publish', `f: publish only, ${CLUSTER_PUBLISH_TOPICS} topics, ${PUBLISH_CONNECTIONS} conns × ${PUBLISH_DEPTH} pipelined`,
      async (running) => await publishOnly(system, running, PUBLISH_CONNECTIONS, PUBLISH_DEPTH, clusterSeconds.publish, size.publishWarmSeconds, { topics: CLUSTER_PUBLISH_TOPICS, eventsPerRequest: 1 })])
    const perTopic = Math.round(size.subscribers / CLUSTER_FANOUT_TOPICS)
    plan.push(['f-fanout', `f: ${CLUSTER_FANOUT_TOPICS} topics × ${perTopic} subs @ ${CLUSTER_FANOUT_RATE}/s`,
      async (running) => await fanout(system, running, CLUSTER_FANOUT_TOPICS, perTopic, CLUSTER_FANOUT_RATE, clusterSeconds.fanout)])
  }
  if (wants('g') && system.name !== 'nchan') {
    plan.push(['g', `g: batches of ${BATCH_EVENTS} events to ${BATCH_EVENTS} topics, ${BATCH_CONNECTIONS} conns × ${BATCH_DEPTH} pipelined`,
      async (running) => await publishOnly(system, running, BATCH_CONNECTIONS, BATCH_DEPTH, size.publishSeconds, size.publishWarmSeconds, { topics: BATCH_EVENTS, eventsPerRequest: BATCH_EVENTS })])
  }
  if (wants('h') && system.name !== 'nchan') {
    plan.push(['h', `h: ${size.topics} topics × 1 sub @ 500/s, batches of ${PER_USER_GROUP}`, async (running) => await fanout(system, running, size.topics, 1, 500, size.seconds, batchRequests(PER_USER_GROUP))])
  }
  if (wants('i') && system.name !== 'nchan') {
    plan.push(['i', `i: ${size.topics} topics × 1 sub @ 500/s, FCALL from outside, pipelines of ${PER_USER_GROUP}`, async (running) => await fanout(system, running, size.topics, 1, 500, size.seconds, functionCalls(PER_USER_GROUP))])
  }
  for (const [key, scenario, measure] of plan) {
    const samples: Metrics[] = []
    for (let run = 0; run < runs; run++) {
      process.stderr.write(`${system.name} ${scenario} run ${run + 1}/${runs} (${Math.round((Date.now() - startedAt) / 1000)} s)\n`)
      let running: Running
      try {
        running = await system.start()
      } catch (error) {
        notes.push(`${system.name} ${scenario}: could not start: ${(error as Error).message.split('\n')[0] ?? ''}`)
        break
      }
      try {
        samples.push(await measure(running))
        if (running.metricsPort !== undefined && run === runs - 1) scraped.push(`# ${system.name} ${scenario}, after run ${run + 1}\n${await heraldMetrics(running.metricsPort)}`)
      } catch (error) {
        notes.push(`${system.name} ${scenario} run ${run + 1}: ${(error as Error).message}`)
      } finally {
        await stopRunning(running)
      }
    }
    if (samples.length === 0) continue
    const metrics: Metrics = {}
    for (const metric of Object.keys(samples[0] as Metrics)) metrics[metric] = median(samples.map((sample) => sample[metric] as number))
    results.push({ system: system.name, key, scenario, runs: samples.length, metrics, samples })
    const bad = (['lost', 'duplicated', 'outOfOrder', 'failedPublishes'] as const).filter((metric) => samples.some((sample) => (sample[metric] ?? 0) > 0))
    if (bad.length > 0) notes.push(`${system.name} ${scenario}: non-zero ${bad.join(', ')} in at least one run (see the JSON)`)
    const busy = samples.filter((sample) => (sample.foreignCpuShare ?? 0) > 0.1).length
    if (busy > 0) notes.push(`${system.name} ${scenario}: other processes used over 10% of the server's core in ${busy} run(s); numbers are noisier`)
    if (samples.some((sample) => (sample.loadCpuShare ?? 0) > 0.9)) notes.push(`${system.name} ${scenario}: the load generator used over 90% of its core; the numbers may be its limit`)
  }
}

const machine = { ...machineInfo(quick, runs), durationSeconds: (Date.now() - startedAt) / 1000 }
const report = markdown(results, machine, notes)
mkdirSync(`${root}bench/results`, { recursive: true })
// Only a full default run replaces latest.*: a quick or partial run must not overwrite the published table.
const partial = values.scenario !== undefined || values.systems !== undefined || values.runs !== undefined
const file = quick ? 'quick' : partial ? 'partial' : 'latest'
const json = { machine, sizes: size, results, notes }
writeFileSync(`${root}bench/results/${file}.json`, JSON.stringify(json, null, 2) + '\n')
writeFileSync(`${root}bench/results/${file}.md`, report)
if (scraped.length > 0) writeFileSync(`${root}bench/results/${file}.metrics.txt`, scraped.join('\n') + '\n')
console.log(JSON.stringify({ machine, results: results.map(({ samples: _, ...result }) => result), notes }))
console.log()
console.log(report)
process.stderr.write(`wrote bench/results/${file}.json and ${file}.md${scraped.length > 0 ? ` and ${file}.metrics.txt` : ''}\n`)
clearTimeout(watchdog)

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] as number
}
