/**
 * Where a single publish (POST /v1/events on Redis) spends its time: the built Herald (run `npm run build` first)
 * under scenario d's load (4 keep-alive connections × 16 pipelined POSTs, 10 topics), profiled with
 * `node --cpu-prof`, pinned as `npm run bench` pins it. Prints the accepted publishes/s, then the profile's self
 * time by group (HTTP parsing, Fastify, validation, JSON, ioredis, Herald's own code, GC, …) and the top functions.
 *   tsx bench/profile-publish.ts [seconds=8] [redis|memory] [plain]
 * memory: the embedded broker instead of Redis; plain: no profiler, only the figures (for before/after comparisons
 * of a change: run it several times, alternating builds). The profile stays in the temp dir it names, for Chrome
 * DevTools or speedscope.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, httpReady, killAllNow, prepareLoadGenerator, startPinned, startRedis } from './processes.js'
import { publishOnly } from './scenarios.js'
import { heraldEnv, LOAD_CORE, root, type Running, SERVER_CORE, systems } from './systems.js'

interface ProfileNode {
  id: number
  callFrame: { functionName: string, url: string, lineNumber: number }
  children?: number[]
}
interface Profile { nodes: ProfileNode[], startTime: number, samples: number[], timeDeltas: number[] }

/** The group a function belongs to, from its script's URL and name. */
export function groupOf ({ functionName, url }: ProfileNode['callFrame']): string {
  if (functionName === '(garbage collector)') return 'GC'
  if (functionName === '(idle)') return 'idle'
  if (functionName === '(program)') return 'native, unattributed (V8, libuv, llhttp, syscalls)'
  if (url === '' && /^(parse|stringify)$/.test(functionName)) return 'JSON (builtins)'
  if (url === '' && /^(writev|writeUtf8String|writeLatin1String|writeBuffer|shutdown|readStop|readStart)$/.test(functionName)) return 'Node sockets and streams'
  if (/node_modules\/(fast-json-stringify|secure-json-parse|fast-uri)/.test(url)) return 'JSON (fast-json-stringify, secure-json-parse)'
  if (/node_modules\/(ajv|ajv-formats|@fastify\/ajv-compiler)|typebox/.test(url) || (url === '' && functionName === 'validate')) return 'validation (Ajv, TypeBox)'
  if (/node_modules\/(ioredis|@ioredis|redis-parser|redis-errors|denque|cluster-key-slot|standard-as-callback)/.test(url)) return 'ioredis'
  if (/node_modules\/(pino|sonic-boom|thread-stream)/.test(url)) return 'logging (pino)'
  if (/node_modules\/(fastify|find-my-way|avvio|light-my-request|@fastify|fastify-plugin|process-warning|toad-cache|abstract-logging|rfdc)\//.test(url)) return 'Fastify (routing, hooks, reply)'
  if (/node_modules\//.test(url)) return `other packages (${/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1] ?? '?'})`
  if (/\/dist\/(src|routes|plugins)\//.test(url)) return 'Herald'
  if (/^node:(_http|http|internal\/http|internal\/(deps\/)?llhttp)/.test(url) || /_http_/.test(url)) return 'Node HTTP (parsing, server, outgoing)'
  if (/^node:(net|internal\/(net|stream_base|streams|stream)|stream|internal\/streams)/.test(url)) return 'Node sockets and streams'
  if (/^node:internal\/(process\/task_queues|timers|async_hooks|process\/promises)|^node:timers/.test(url)) return 'Node event loop (microtasks, timers, async hooks)'
  if (url.startsWith('node:')) return 'Node other'
  return 'other'
}

/**
 * Self time per node id, in ms, from the samples taken within [from, to] (µs of the monotonic clock, as the
 * profile's own timestamps), so start-up and shutdown stay out.
 */
function selfTimes (profile: Profile, from: number, to: number): Map<number, number> {
  const self = new Map<number, number>()
  let time = profile.startTime
  for (const [index, id] of profile.samples.entries()) {
    const delta = profile.timeDeltas[index] ?? 0
    time += delta
    if (time >= from && time <= to) self.set(id, (self.get(id) ?? 0) + delta / 1000)
  }
  return self
}

export function summarize (profile: Profile, from = 0, to = Number.POSITIVE_INFINITY, top = 25): string {
  const self = selfTimes(profile, from, to)
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const groups = new Map<string, number>()
  const functions = new Map<string, number>()
  let total = 0
  for (const [id, ms] of self) {
    const frame = (byId.get(id) as ProfileNode).callFrame
    const group = groupOf(frame)
    if (group === 'idle') continue
    total += ms
    groups.set(group, (groups.get(group) ?? 0) + ms)
    const name = `${frame.functionName || '(anonymous)'} ${frame.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/dist\//, 'dist/')}:${frame.lineNumber + 1}`
    functions.set(name, (functions.get(name) ?? 0) + ms)
  }
  const percent = (ms: number): string => `${((ms / total) * 100).toFixed(1)}%`
  const lines = [`busy ${(total / 1000).toFixed(2)} s of samples (idle left out)`, '', '| group | self time | share |', '| --- | ---: | ---: |']
  for (const [group, ms] of [...groups].sort((a, b) => b[1] - a[1])) lines.push(`| ${group} | ${ms.toFixed(0)} ms | ${percent(ms)} |`)
  lines.push('', '| function | self time | share |', '| --- | ---: | ---: |')
  for (const [name, ms] of [...functions].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`| \`${name}\` | ${ms.toFixed(0)} ms | ${percent(ms)} |`)
  return lines.join('\n')
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const seconds = Number(process.argv[2] ?? 8)
  const memory = process.argv[3] === 'memory'
  const plain = process.argv[4] === 'plain'
  process.chdir(root)
  prepareLoadGenerator(LOAD_CORE)
  process.on('exit', killAllNow)
  const dir = mkdtempSync(join(tmpdir(), 'herald-profile-'))
  const redis = memory ? undefined : await startRedis(LOAD_CORE)
  const port = await freePort()
  const env: Record<string, string> = { ...heraldEnv, HOST: '127.0.0.1', PORT: String(port), HERALD_METRICS_PORT: String(await freePort()) }
  if (redis !== undefined) env.REDIS_URL = `redis://127.0.0.1:${redis.port}`
  const server = await startPinned('herald', SERVER_CORE, [process.execPath, ...(plain ? [] : ['--cpu-prof', '--cpu-prof-dir', dir]), 'dist/src/server.js'], env, port, async () => await httpReady(port, '/health/ready'))
  const running: Running = redis === undefined ? { server } : { server, redis }
  const system = systems()[memory ? 'herald-memory' : 'herald-redis']
  // The profile's timestamps are µs of CLOCK_MONOTONIC, as process.hrtime here: only the measured window counts.
  const from = Number(process.hrtime.bigint() / 1000n) + 1_000_000
  const metrics = await publishOnly(system, running, 4, 16, seconds, 1)
  const to = Number(process.hrtime.bigint() / 1000n)
  // SIGINT closes at once (SIGTERM drains first); the profile is written as the process exits.
  const exited = new Promise((resolve) => server.child.once('exit', resolve))
  process.kill(server.pid, 'SIGINT')
  await exited
  await redis?.stop()
  const figures = `${memory ? 'herald-memory' : 'herald-redis'}: ${Math.round(metrics.acceptedPerSecond ?? 0)} accepted publishes/s${plain ? '' : ' under the profiler'}, ` +
    `server CPU ${((metrics.cpuPer100k ?? 0) * 10).toFixed(1)} µs per publish (${Math.round((metrics.serverCpuShare ?? 0) * 100)}% of its core; others used ${Math.round((metrics.foreignCpuShare ?? 0) * 100)}%), ${(metrics.writeSyscallsPerEvent ?? 0).toFixed(2)} write syscalls per publish, Redis ${((metrics.redisCpuPer100k ?? 0) * 10).toFixed(1)} µs`
  const file = readdirSync(dir).find((name) => name.endsWith('.cpuprofile'))
  if (plain || file === undefined) {
    console.log(plain ? figures : `${figures}; no profile written in ${dir}`)
  } else {
    console.log(`${figures}; profile: ${join(dir, file)}\n`)
    console.log(summarize(JSON.parse(readFileSync(join(dir, file), 'utf8')) as Profile, from, to))
  }
  if (plain) rmSync(dir, { recursive: true, force: true })
}
