import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { test } from 'node:test'
import semver from 'semver'
import { parse } from 'yaml'
import { composeFile, type ComposeService } from './helpers/compose-file.js'

function compose (...args: string[]): { status: number | null, stdout: string, stderr: string } {
  const run = spawnSync('docker-compose', ['-f', 'docker-compose.yml', ...args], { encoding: 'utf8', env: { ...process.env, HERALD_JWT_SECRET: '' } })
  if (run.error !== undefined) throw new Error(`docker-compose is not installed: apt-get install -y docker-compose (${run.error.message})`)
  return run
}

const file = composeFile()
const services = file.services
const service = (name: string): ComposeService => {
  const found = services[name]
  assert.ok(found !== undefined, `docker-compose.yml has a ${name} service`)
  return found
}
const INSTANCES = ['herald-1', 'herald-2']
/** Where a bind mount of `source` (a path in the repo) lands in a service's container. */
const mountOf = (name: string, source: string) => service(name).volumes?.find((volume) => volume.startsWith(`${source}:`))?.split(':')[1]

test('docker-compose.yml is valid compose for docker-compose itself (v1, Debian\'s), with and without the monitoring profile', () => {
  for (const args of [['config', '-q'], ['--profile', 'monitoring', 'config', '-q']]) {
    const run = compose(...args)
    assert.equal(run.status, 0, run.stderr)
  }
})

test('compose runs Redis (AOF, healthcheck), two Herald instances and nginx by default; Prometheus and Grafana in the monitoring profile', () => {
  const byDefault = Object.keys(services).filter((name) => services[name]?.profiles === undefined).sort()
  assert.deepEqual(byDefault, ['herald-1', 'herald-2', 'nginx', 'redis'])
  const monitoring = Object.keys(services).filter((name) => services[name]?.profiles?.includes('monitoring') === true).sort()
  assert.deepEqual(monitoring, ['grafana', 'prometheus'])

  const redis = service('redis')
  assert.match(redis.image ?? '', /^redis:7/)
  assert.deepEqual(redis.command?.slice(0, 3), ['redis-server', '--appendonly', 'yes'])
  // A memory bound under which a full Redis refuses writes (503 HERALD_REDIS_FULL) and evicts nothing Herald stored.
  const option = (name: string) => redis.command?.[(redis.command?.indexOf(name) ?? -2) + 1]
  assert.equal(option('--maxmemory'), '512mb')
  assert.equal(option('--maxmemory-policy'), 'noeviction')
  assert.deepEqual(redis.healthcheck?.test, ['CMD', 'redis-cli', 'ping'])
})

test('both instances run the same settings, wait for a healthy Redis, are checked on /health/ready, and publish no port', () => {
  const [one, two] = INSTANCES.map(service) as [ComposeService, ComposeService]
  assert.deepEqual(one, two, 'herald-1 and herald-2 differ only by name')
  const environment = one.environment ?? {}
  assert.equal(environment.REDIS_URL, 'redis://redis:6379')
  assert.equal(environment.HOST, '0.0.0.0')
  assert.equal(environment.HERALD_METRICS_HOST, '0.0.0.0', 'metrics reachable from Prometheus on the compose network')
  assert.equal(environment.HERALD_TRUST_PROXY, 'uniquelocal')
  assert.deepEqual(one.depends_on, { redis: { condition: 'service_healthy' } })
  assert.match(one.healthcheck?.test.join(' ') ?? '', /http:\/\/127\.0\.0\.1:8080\/health\/ready/)
  assert.equal(one.ports, undefined, 'instances (and their metrics port) are reached through the compose network only')
})

test('every published port is on the host\'s loopback only', () => {
  const published = Object.entries(services).flatMap(([name, { ports }]) => (ports ?? []).map((port) => ({ name, port })))
  assert.deepEqual(published.map(({ name }) => name).sort(), ['grafana', 'nginx', 'prometheus'])
  for (const { name, port } of published) assert.match(port, /^127\.0\.0\.1:\d+:\d+$/, name)
  const config = compose('--profile', 'monitoring', 'config')
  assert.equal(config.status, 0, config.stderr)
  assert.match(config.stdout, /- 127\.0\.0\.1:8080:8080\/tcp/, 'nginx serves http://127.0.0.1:8080')
})

test('nginx runs deploy/nginx.conf with every placeholder filled: both instances at their port, listening on the published port', () => {
  const nginx = service('nginx')
  const mounted = mountOf('nginx', './deploy/nginx.conf')
  assert.ok(mounted !== undefined, 'deploy/nginx.conf is mounted')
  const script = nginx.command?.at(-1) ?? ''
  const substitutions = [...script.matchAll(/-e 's\/(\{\{\w+\}\})\/([^/]*)\/'/g)].map((match) => [match[1] as string, match[2] as string] as const)
  let text = readFileSync('deploy/nginx.conf', 'utf8')
  for (const [placeholder, value] of substitutions) text = text.replaceAll(placeholder, value)
  assert.doesNotMatch(text, /\{\{\w+\}\}/, 'no placeholder left')
  const port = service('herald-1').environment?.PORT
  assert.deepEqual([...text.matchAll(/^\s*server (\S+) /gm)].map((match) => match[1]), INSTANCES.map((name) => `${name}:${port}`))
  assert.match(text, /^\s*listen 8080;$/m)
  assert.match(script, new RegExp(` ${mounted} > /etc/nginx/conf\\.d/default\\.conf && exec nginx -g 'daemon off;'$`))
  assert.deepEqual(nginx.depends_on, Object.fromEntries(INSTANCES.map((name) => [name, { condition: 'service_healthy' }])))
})

test('Prometheus scrapes every instance\'s metrics port; Grafana is provisioned with it and the Herald dashboard', () => {
  assert.equal(mountOf('prometheus', './deploy/prometheus.yml'), '/etc/prometheus/prometheus.yml')
  const prometheus = parse(readFileSync('deploy/prometheus.yml', 'utf8')) as { scrape_configs: Array<{ job_name: string, static_configs: Array<{ targets: string[] }> }> }
  const herald = prometheus.scrape_configs.find((job) => job.job_name === 'herald')
  assert.deepEqual(herald?.static_configs.flatMap((group) => group.targets), INSTANCES.map((name) => `${name}:${service(name).environment?.HERALD_METRICS_PORT}`))

  const provisioning = mountOf('grafana', './deploy/grafana/provisioning')
  const dashboards = mountOf('grafana', './deploy/grafana/dashboards')
  assert.equal(provisioning, '/etc/grafana/provisioning')
  const datasources = parse(readFileSync('deploy/grafana/provisioning/datasources/prometheus.yml', 'utf8')) as { datasources: Array<{ uid: string, url: string, isDefault?: boolean }> }
  assert.deepEqual(datasources.datasources.map(({ url, isDefault }) => [url, isDefault]), [['http://prometheus:9090', true]], 'the default datasource, which the dashboard\'s datasource variable picks')
  const providers = parse(readFileSync('deploy/grafana/provisioning/dashboards/herald.yml', 'utf8')) as { providers: Array<{ options: { path: string } }> }
  assert.deepEqual(providers.providers.map(({ options }) => options.path), [dashboards], 'Grafana loads dashboards from where they are mounted')
  const home = service('grafana').environment?.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH ?? ''
  assert.ok(home.startsWith(`${dashboards}/`) && existsSync(`deploy/grafana/dashboards/${home.slice(`${dashboards}/`.length)}`), `the home dashboard ${home} is a file in deploy/grafana/dashboards`)

  assert.ok(dashboard.panels.filter((panel) => panel.type !== 'row').every((panel) => (panel.targets ?? []).length > 0), 'every panel has a query')
})

interface Variable { name: string, type: string, query: string | { query: string }, datasource?: { uid: string }, includeAll?: boolean, allValue?: string }
const dashboard = JSON.parse(readFileSync('deploy/grafana/dashboards/herald.json', 'utf8')) as {
  __inputs: Array<{ name: string, type: string, pluginId: string }>
  templating: { list: Variable[] }
  panels: Array<{ type: string, title: string, datasource?: { uid: string }, targets?: Array<{ expr: string, datasource: { uid: string } }> }>
}

/** The datasource input's reference, as Grafana writes it (a plain string, not a template literal). */
const DATASOURCE_INPUT = '$' + '{DS_PROMETHEUS}'

test('the dashboard imports into any Grafana: a datasource input, and job and instance variables in every query', () => {
  // Import asks for the datasource (__inputs) and writes its uid over ${DS_PROMETHEUS}; provisioned as compose does
  // it, without an import, the variable of the same name resolves it to the default Prometheus.
  assert.deepEqual(dashboard.__inputs.map(({ name, type, pluginId }) => [name, type, pluginId]), [['DS_PROMETHEUS', 'datasource', 'prometheus']])
  const variables = Object.fromEntries(dashboard.templating.list.map((variable) => [variable.name, variable]))
  assert.deepEqual(Object.keys(variables), ['DS_PROMETHEUS', 'job', 'instance'])
  assert.deepEqual([variables.DS_PROMETHEUS?.type, variables.DS_PROMETHEUS?.query], ['datasource', 'prometheus'])
  for (const name of ['job', 'instance']) {
    assert.equal(variables[name]?.type, 'query')
    assert.equal(variables[name]?.datasource?.uid, DATASOURCE_INPUT)
  }
  assert.deepEqual([variables.instance?.includeAll, variables.instance?.allValue], [true, '.*'])
  const uids = new Set(dashboard.panels.flatMap((panel) => [panel.datasource?.uid, ...(panel.targets ?? []).map((target) => target.datasource.uid)]).filter((uid) => uid !== undefined))
  assert.deepEqual([...uids], [DATASOURCE_INPUT], 'every panel and query uses the datasource input')
  for (const panel of dashboard.panels) {
    for (const { expr } of panel.targets ?? []) {
      assert.doesNotMatch(expr, /job="herald"/, `${panel.title}: no job name written in`)
      // Each selector names the job and the instances picked.
      const selectors = [...expr.matchAll(/\b[a-z_:][\w:]*\{([^}]*)\}/g)].map((match) => match[1] as string)
      assert.ok(selectors.length > 0 && selectors.every((labels) => labels.startsWith('job="$job", instance=~"$instance"')), `${panel.title}: ${expr}`)
    }
  }
})

test('the Dockerfile builds in stages on a Node line package.json accepts, runs as a non-root user and checks readiness', () => {
  const dockerfile = readFileSync('Dockerfile', 'utf8')
  const images = [...dockerfile.matchAll(/^FROM node:(\d+)-\S+/gm)].map((match) => Number(match[1]))
  assert.equal(images.length, 2, 'a build stage and a runtime stage')
  const engines = (JSON.parse(readFileSync('package.json', 'utf8')) as { engines: { node: string } }).engines.node
  // The tag follows the line's latest release; npm ci --engine-strict in the build refuses one outside engines.
  for (const major of images) assert.ok(semver.intersects(`^${major}.0.0`, engines), `node:${major} is outside engines.node ${engines}`)
  assert.match(dockerfile, /^RUN npm ci --engine-strict /m)
  assert.match(dockerfile, /^USER node$/m)
  assert.match(dockerfile, /npm prune --omit=dev/)
  assert.match(dockerfile, /^CMD \["node", "dist\/src\/server.js"\]$/m)
  assert.match(dockerfile, /^HEALTHCHECK [^\n]*\\\n\s+CMD .*http:\/\/127\.0\.0\.1:8080\/health\/ready/m)
})
