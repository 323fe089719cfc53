import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { release } from 'node:os'
import { versionOf } from './processes.js'
import type { Metrics } from './scenarios.js'
import type { SystemName } from './systems.js'

export interface Result {
  system: SystemName
  scenario: string
  /** Scenario key: a20, a100, b, c, d, e, f-publish, f-fanout, g, h, i. */
  key: string
  runs: number
  metrics: Metrics
  /** Every run's metrics, for spread. */
  samples: Metrics[]
}

export interface Machine {
  date: string
  cpu: string
  cores: number
  kernel: string
  node: string
  redis: string
  nginx: string
  /** The commit measured, with `+changes` when the working tree outside bench/ differed from it. */
  commit: string
  quick: boolean
  runs: number
  durationSeconds?: number
}

export function machineInfo (quick: boolean, runs: number): Machine {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8')
  return {
    date: new Date().toISOString(),
    cpu: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? 'unknown',
    cores: cpuinfo.match(/^processor\s*:/gm)?.length ?? 0,
    kernel: release(),
    node: process.version,
    redis: versionOf('redis-server', ['--version']),
    nginx: versionOf('nginx', ['-v']),
    commit: commit(),
    quick,
    runs
  }
}

function commit (): string {
  const head = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout?.trim() ?? ''
  const changed = spawnSync('git', ['status', '--porcelain', '--untracked-files=no', '--', '.', ':!bench'], { encoding: 'utf8' }).stdout?.trim() ?? ''
  return head === '' ? 'unknown' : `${head}${changed === '' ? '' : '+changes'}`
}

const fixed = (value: number | undefined, digits = 1): string => value === undefined || Number.isNaN(value) ? '–' : value.toFixed(digits)

function ratio (a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || Number.isNaN(a) || Number.isNaN(b) || b === 0) return '–'
  return `${(a / b).toFixed(2)}×`
}

export function markdown (results: Result[], machine: Machine, notes: string[]): string {
  const lines = [
    '# Herald benchmark',
    '',
    `${machine.date} · ${machine.cpu} · ${machine.cores} cores · Linux ${machine.kernel} · Node ${machine.node} · Herald ${machine.commit ?? 'unknown'} · ${machine.redis} · ${machine.nginx} · median of ${machine.runs} run(s)${machine.quick ? ' · quick' : ''}${machine.durationSeconds === undefined ? '' : ` · ${Math.round(machine.durationSeconds)} s`}`,
    '',
    'Server pinned to core 0; load generator and Redis to core 1. Server CPU is user+sys of the server process from /proc;',
    'Redis CPU is listed apart. "load CPU" is the generator\'s share of its core (near 100% means the numbers are the generator\'s limit).',
    ''
  ]
  const fan = results.filter((result) => result.metrics.deliveriesPerSecond !== undefined)
  if (fan.length > 0) {
    lines.push(
      '| scenario | system | deliveries/s | p50 ms | p90 ms | p99 ms | max ms | lost | dup | out of order | server CPU s / 100k | Redis CPU s / 100k | peak RSS MiB | load CPU |',
      '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
    )
    for (const { system, scenario, metrics: m } of fan) {
      lines.push(`| ${scenario} | ${system} | ${fixed(m.deliveriesPerSecond, 0)} | ${fixed(m.p50, 2)} | ${fixed(m.p90, 2)} | ${fixed(m.p99, 2)} | ${fixed(m.max, 1)} | ${fixed(m.lost, 0)} | ${fixed(m.duplicated, 0)} | ${fixed(m.outOfOrder, 0)} | ${fixed(m.cpuPer100k, 2)} | ${fixed(m.redisCpuPer100k, 2)} | ${fixed(m.peakRssMiB, 0)} | ${fixed((m.loadCpuShare ?? Number.NaN) * 100, 0)}% |`)
    }
  }
  const idleRows = results.filter((result) => result.metrics.kibPerConnection !== undefined)
  if (idleRows.length > 0) {
    lines.push('', '| scenario | system | open connections | server KiB / connection | Redis KiB / connection | server RSS before → after MiB |', '| --- | --- | ---: | ---: | ---: | ---: |')
    for (const { system, scenario, metrics: m } of idleRows) {
      lines.push(`| ${scenario} | ${system} | ${fixed(m.connections, 0)} | ${fixed(m.kibPerConnection, 2)} | ${fixed(m.redisKibPerConnection, 2)} | ${fixed(m.rssBeforeMiB, 0)} → ${fixed(m.rssMiB, 0)} |`)
    }
  }
  const publishRows = results.filter((result) => result.metrics.acceptedPerSecond !== undefined)
  if (publishRows.length > 0) {
    lines.push('', '| scenario | system | accepted publishes/s | failed | server CPU s / 100k | Redis CPU s / 100k | server CPU | load CPU |', '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |')
    for (const { system, scenario, metrics: m } of publishRows) {
      lines.push(`| ${scenario} | ${system} | ${fixed(m.acceptedPerSecond, 0)} | ${fixed(m.failed, 0)} | ${fixed(m.cpuPer100k, 2)} | ${fixed(m.redisCpuPer100k, 2)} | ${fixed((m.serverCpuShare ?? Number.NaN) * 100, 0)}% | ${fixed((m.loadCpuShare ?? Number.NaN) * 100, 0)}% |`)
    }
  }
  lines.push(...clusterTable(results))
  lines.push(...ratios(results))
  if (notes.length > 0) lines.push('', ...notes.map((note) => `- ${note}`))
  return lines.join('\n') + '\n'
}

/** The headline comparisons: Herald ÷ baseline for the numbers the design's targets are about. */
function ratios (results: Result[]): string[] {
  const metricOf = (metric: string) => (metrics: Metrics): number | undefined => metrics[metric]
  const serverAndRedis = (m: Metrics): number | undefined => m.cpuPer100k === undefined ? undefined : m.cpuPer100k + (m.redisCpuPer100k ?? 0)
  // [label, Herald's scenario key, the value, digits, the baselines' scenario key when it differs (h, i: Nchan's b)]
  const rows: Array<[string, string, (metrics: Metrics) => number | undefined, number, string?]> = [
    ['server CPU s / 100k deliveries, a @ 20/s (lower is better)', 'a20', metricOf('cpuPer100k'), 2],
    ['server + Redis CPU s / 100k deliveries, a @ 20/s (lower is better)', 'a20', serverAndRedis, 2],
    ['p99 latency ms, a @ 100/s (lower is better)', 'a100', metricOf('p99'), 2],
    ['server KiB per idle connection (lower is better)', 'c', metricOf('kibPerConnection'), 2],
    ['accepted publishes/s, publish only (higher is better; target: Herald ≥ the seed)', 'd', metricOf('acceptedPerSecond'), 0],
    ['server CPU s / 100k deliveries, e: 1 topic × 10k subs @ 5/s (lower is better)', 'e', metricOf('cpuPer100k'), 2],
    ['p99 latency ms, e: 1 topic × 10k subs @ 5/s (lower is better)', 'e', metricOf('p99'), 2],
    ['accepted events/s, g: batches of 100 to 100 topics (higher is better; target ≥ 100,000)', 'g', metricOf('acceptedPerSecond'), 0],
    ['server + Redis CPU s / 100k deliveries, per-user case: Herald h (batches of 50), baselines b (lower is better; target ≤ Nchan)', 'h', serverAndRedis, 2, 'b'],
    ['server CPU s / 100k deliveries, per-user case: Herald i (FCALL from outside), baselines b (lower is better; target ≤ Nchan)', 'i', metricOf('cpuPer100k'), 2, 'b']
  ]
  const get = (system: SystemName, key: string, value: (metrics: Metrics) => number | undefined): number | undefined => {
    const result = results.find((candidate) => candidate.system === system && candidate.key === key)
    return result === undefined ? undefined : value(result.metrics)
  }
  const present = rows.filter(([, key, value]) => results.some((result) => result.key === key && result.system.startsWith('herald') && value(result.metrics) !== undefined))
  if (present.length === 0) return []
  const lines = [
    '',
    '| headline | herald-memory | herald-redis | seed | nchan | memory ÷ nchan | memory ÷ seed | redis ÷ nchan | redis ÷ seed |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
  ]
  for (const [label, key, value, digits, baselineKey = key] of present) {
    const [memory, redis] = (['herald-memory', 'herald-redis'] as const).map((system) => get(system, key, value))
    const [seed, nchan] = (['seed', 'nchan'] as const).map((system) => get(system, baselineKey, value))
    lines.push(`| ${label} | ${fixed(memory, digits)} | ${fixed(redis, digits)} | ${fixed(seed, digits)} | ${fixed(nchan, digits)} | ${ratio(memory, nchan)} | ${ratio(memory, seed)} | ${ratio(redis, nchan)} | ${ratio(redis, seed)} |`)
  }
  return lines
}

/**
 * f: Herald on one Redis and on a 3-master cluster, side by side: publish throughput, Redis CPU per publish in all
 * and on each shard (with its share of the total; the design's target is each within 20% of a third), and the
 * fan-out's CPU per delivery.
 */
function clusterTable (results: Result[]): string[] {
  const publish = results.filter((result) => result.key === 'f-publish')
  if (publish.length === 0) return []
  const lines = [
    '',
    '| f: system | accepted publishes/s | server CPU s / 100k publishes | Redis CPU s / 100k publishes | each shard: CPU s / 100k (share of Redis CPU; share of publishes) | most uneven shard vs a third | fan-out server CPU s / 100k deliveries | fan-out Redis CPU s / 100k deliveries |',
    '| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |'
  ]
  for (const { system, metrics: m } of publish) {
    const fan = results.find((result) => result.key === 'f-fanout' && result.system === system)?.metrics
    const shards: string[] = []
    for (let index = 0; m[`shard${index}CpuPer100k`] !== undefined; index++) {
      shards.push(`${fixed(m[`shard${index}CpuPer100k`], 2)} (${fixed((m[`shard${index}Share`] ?? Number.NaN) * 100, 0)}%; ${fixed((m[`shard${index}EventShare`] ?? Number.NaN) * 100, 0)}%)`)
    }
    const deviation = m.shardShareDeviation === undefined ? '–' : `${(m.shardShareDeviation * 100).toFixed(0)}%`
    lines.push(`| ${system} | ${fixed(m.acceptedPerSecond, 0)} | ${fixed(m.cpuPer100k, 2)} | ${fixed(m.redisCpuPer100k, 2)} | ${shards.length === 0 ? 'one Redis' : shards.join(' · ')} | ${deviation} | ${fixed(fan?.cpuPer100k, 2)} | ${fixed(fan?.redisCpuPer100k, 2)} |`)
  }
  return lines
}
