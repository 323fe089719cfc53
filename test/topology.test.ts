import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { test, type TestContext } from 'node:test'
import { parse, stringify } from 'yaml'
import { publish, until } from './helper.js'
import { BalancerProcess, missing } from './helpers/balancer-process.js'
import { composeFile } from './helpers/compose-file.js'
import { failover, openStreams } from './helpers/failover.js'
import { HeraldProcess } from './helpers/herald-process.js'
import { missingPrometheus, PrometheusProcess } from './helpers/prometheus-process.js'
import { freePort, RedisServer } from './helpers/redis-server.js'

const DASHBOARD = 'deploy/grafana/dashboards/herald.json'

/** What each compose service becomes here: the same settings, with loopback addresses and free ports. */
interface Instance {
  herald: HeraldProcess
  metricsUrl: string
  composeTarget: string
  /** The service's Docker healthcheck run against this process: its exit status (0 healthy). */
  healthcheck: () => number | null
}

/**
 * A Herald instance as docker-compose.yml runs `service`: its environment, except where it listens and where
 * Redis is (loopback and free ports here, service names there), and warn-level logs to keep the test quiet.
 */
async function startInstance (t: TestContext, service: string, redisUrl: string): Promise<Instance> {
  const { environment, healthcheck } = composeFile().services[service] ?? {}
  assert.ok(environment !== undefined && healthcheck !== undefined, `docker-compose.yml has a ${service} service with an environment and a healthcheck`)
  const [kind, command, ...args] = healthcheck.test
  assert.deepEqual([kind, command, args[0]], ['CMD', 'node', '-e'], 'the healthcheck is a node -e script')
  const local: Record<string, string> = { HOST: '127.0.0.1', REDIS_URL: redisUrl, HERALD_METRICS_HOST: '127.0.0.1', HERALD_METRICS_PORT: String(await freePort()), LOG_LEVEL: 'warn' }
  for (const name of [...Object.keys(local), 'PORT']) assert.ok(name in environment, `${service} sets ${name}`)
  // HeraldProcess picks a free PORT itself.
  const { PORT, ...composed } = environment
  const herald = await HeraldProcess.start({ ...composed, ...local })
  t.after(async () => await herald.kill())
  const script = (args[1] ?? '').replace(`127.0.0.1:${PORT}`, `127.0.0.1:${herald.port}`)
  assert.notEqual(script, args[1], 'the healthcheck asks the instance\'s own port')
  return {
    herald,
    metricsUrl: `http://127.0.0.1:${local.HERALD_METRICS_PORT}/metrics`,
    composeTarget: `${service}:${environment.HERALD_METRICS_PORT}`,
    healthcheck: () => spawnSync(process.execPath, ['-e', script], { timeout: 10_000 }).status
  }
}

/** deploy/prometheus.yml scraping the local instances instead of the compose services, every second. */
function prometheusConfig (instances: Instance[]): string {
  const config = parse(readFileSync('deploy/prometheus.yml', 'utf8')) as { global: Record<string, string>, rule_files?: string[], scrape_configs: Array<{ job_name: string, static_configs: Array<{ targets: string[] }> }> }
  const job = config.scrape_configs.find((scrape) => scrape.job_name === 'herald')
  assert.ok(job !== undefined, 'deploy/prometheus.yml has a herald job')
  const targets = job.static_configs.flatMap((group) => group.targets)
  assert.deepEqual(targets, instances.map((instance) => instance.composeTarget), 'Prometheus scrapes every compose instance at its metrics port')
  for (const group of job.static_configs) group.targets = group.targets.map((target) => new URL(instances.find((instance) => instance.composeTarget === target)?.metricsUrl ?? '').host)
  // Every 15 s in compose; every second here, so the test waits seconds, not minutes.
  config.global.scrape_interval = '1s'
  config.global.evaluation_interval = '1s'
  // The alert rules, from where the config names them (relative to deploy/, where the config is).
  config.rule_files = (config.rule_files ?? []).map((file) => resolve('deploy', file))
  return stringify(config)
}

/**
 * Every PromQL expression of the dashboard as Prometheus gets it from Grafana: $__rate_interval, the job variable
 * at its default, the instance variable at All (its allValue).
 */
function dashboardQueries (): string[] {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Array<{ targets?: Array<{ expr: string }> }> }
  return dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) =>
    target.expr.replaceAll('$__rate_interval', '1m').replaceAll('$job', 'herald').replaceAll('$instance', '.*')))
}

const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan'])

/**
 * The metric names a PromQL expression reads: identifiers that are not functions (followed by `(`), keywords,
 * label names (inside `{…}`, `by (…)` and the like), strings or durations.
 */
function metricNames (expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
  const names = [...bare.matchAll(/(?<![\w:.])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()/g)].map((match) => match[1] as string)
  return [...new Set(names.filter((name) => !KEYWORDS.has(name.toLowerCase())))]
}

/** The sample names an exposition offers: each family's name, and a histogram's or summary's own series. */
function exposedNames (metricsText: string): Set<string> {
  const names = new Set<string>()
  for (const [, name, type] of metricsText.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(name as string)
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${name as string}${suffix}`)
    if (type === 'summary') for (const suffix of ['_sum', '_count']) names.add(`${name as string}${suffix}`)
  }
  return names
}

test('the metric-name reader finds what PromQL reads and nothing else', () => {
  assert.deepEqual(metricNames('histogram_quantile(0.99, sum by (le, command) (rate(herald_redis_command_duration_seconds_bucket{job="herald", command=~"eval.*"}[5m])))'), ['herald_redis_command_duration_seconds_bucket'])
  assert.deepEqual(metricNames('sum(up{job="herald"}) / count(process_cpu_seconds_total) > bool 0.5'), ['up', 'process_cpu_seconds_total'])
  assert.deepEqual(metricNames('rate(a_total[1m]) and on (instance) b unless ignoring(x) c offset 5m'), ['a_total', 'b', 'c'])
})

test('every metric the Grafana dashboard queries is one a Herald instance exposes after some traffic', { timeout: 60_000 }, async (t) => {
  const redis = await RedisServer.start()
  t.after(async () => await redis.stop())
  const { herald, metricsUrl } = await startInstance(t, 'herald-1', redis.url)
  // Traffic: a stream, stored and duplicate publishes, a refused one.
  const controller = new AbortController()
  t.after(() => controller.abort())
  const stream = await fetch(`${herald.url}/v1/stream?topic=dash`, { signal: controller.signal })
  assert.equal(stream.status, 200)
  for (let seq = 0; seq < 5; seq++) assert.equal((await publish(herald.url, { topic: 'dash', data: seq })).status, 202)
  assert.equal((await publish(herald.url, { topic: 'dash', data: 'again' }, { 'idempotency-key': 'k1' })).body.duplicate, false)
  assert.equal((await publish(herald.url, { topic: 'dash', data: 'again' }, { 'idempotency-key': 'k1' })).body.duplicate, true)
  assert.equal((await publish(herald.url, { topic: 'bad topic!', data: 1 })).status, 400)

  const metrics = await (await fetch(metricsUrl)).text()
  const exposed = exposedNames(metrics)
  const queried = [...new Set(dashboardQueries().flatMap(metricNames))].sort()
  assert.ok(queried.length >= 20, `the dashboard reads ${queried.length} metrics (${queried.join(', ')})`)
  // `up` is Prometheus's own series about each scrape: the topology test below reads it from a real Prometheus.
  const unknown = queried.filter((name) => name !== 'up' && !exposed.has(name))
  assert.deepEqual(unknown, [], `${DASHBOARD} queries metrics no instance exposes; exposed: ${[...exposed].sort().join(', ')}`)
})

test('the compose topology as local processes: nginx on deploy/nginx.conf before two instances on one Redis, an instance SIGKILLed loses nothing, Prometheus on deploy/prometheus.yml scrapes both and answers every dashboard query', { timeout: 120_000, skip: missing('nginx') ?? missingPrometheus() }, async (t) => {
  const redis = await RedisServer.start({ appendOnly: true })
  t.after(async () => await redis.stop())
  const [one, two] = await Promise.all([startInstance(t, 'herald-1', redis.url), startInstance(t, 'herald-2', redis.url)])
  const nginx = await BalancerProcess.start('nginx', [`127.0.0.1:${one.herald.port}`, `127.0.0.1:${two.herald.port}`])
  t.after(async () => await nginx.stop())
  const prometheus = await PrometheusProcess.start(prometheusConfig([one, two]))
  t.after(async () => await prometheus.stop())
  await until(async () => Object.values(await prometheus.targets()).filter((health) => health === 'up').length === 2, 15_000, 'Prometheus to scrape both instances')
  assert.deepEqual([one.healthcheck(), two.healthcheck()], [0, 0], 'both instances healthy by their compose healthcheck (/health/ready)')

  const clients = 100
  await failover(t, nginx, one.herald, two.herald, clients, {
    // Compose runs open development mode: publishes need no token.
    beforeKill: async () => {
      await until(async () => (await prometheus.query('sum(herald_streams_open)'))[0]?.value === clients, 10_000, `Prometheus to count ${clients} streams over both instances`)
      const perInstance = await prometheus.query('herald_streams_open')
      assert.equal(perInstance.length, 2, 'one series per instance')
      assert.ok(perInstance.every((sample) => sample.value > 0), 'streams on both instances')
    }
  })

  assert.equal(one.healthcheck(), 1, 'the killed instance fails its healthcheck')
  assert.equal(two.healthcheck(), 0)
  const killed = new URL(one.metricsUrl).host
  const alive = new URL(two.metricsUrl).host
  await until(async () => (await prometheus.targets())[killed] === 'down', 10_000, 'Prometheus to see the killed instance down')
  await until(async () => (await prometheus.query(`herald_streams_open{instance="${alive}"}`))[0]?.value === clients, 10_000, `Prometheus to count all ${clients} streams on the survivor`)
  assert.equal((await prometheus.query('sum(up{job="herald"})'))[0]?.value, 1, 'the dashboard\'s "Instances up" says 1')
  // The alert rules are loaded and evaluate without error, and the killed instance's alert is pending (for: 1m).
  const alertRules = async (): Promise<Array<{ name: string, health: string, lastError?: string }>> =>
    ((await (await fetch(`${prometheus.url}/api/v1/rules?type=alert`)).json()) as { data: { groups: Array<{ rules: Array<{ name: string, health: string, lastError?: string }> }> } }).data.groups.flatMap((group) => group.rules)
  await until(async () => {
    const { data: { alerts } } = await (await fetch(`${prometheus.url}/api/v1/alerts`)).json() as { data: { alerts: Array<{ labels: Record<string, string>, state: string }> } }
    return alerts.some((alert) => alert.labels.alertname === 'HeraldInstanceDown' && alert.labels.instance === killed && alert.state === 'pending')
  }, 10_000, 'HeraldInstanceDown pending for the killed instance')
  const rules = await alertRules()
  assert.ok(rules.length >= 8, `${rules.length} alert rules loaded`)
  assert.deepEqual(rules.filter((rule) => rule.health !== 'ok').map((rule) => `${rule.name}: ${rule.health} ${rule.lastError ?? ''}`), [], 'every rule evaluates')
  assert.ok(((await prometheus.query('sum(increase(herald_events_published_total{result="stored"}[1m]))'))[0]?.value ?? 0) > 0, 'stored publishes counted')

  // Every dashboard query is PromQL this Prometheus accepts (a wrong function or label syntax fails here).
  const failures: string[] = []
  for (const expr of dashboardQueries()) {
    try {
      await prometheus.query(expr)
    } catch (error) {
      failures.push((error as Error).message)
    }
  }
  assert.deepEqual(failures, [])
  assert.equal(await openStreams(two.herald), clients)
})
