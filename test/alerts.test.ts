// deploy/prometheus/alerts.yml: valid rules (promtool check), each unit-tested with series in and alerts out
// (promtool test rules on deploy/prometheus/alerts.test.yml), loaded by deploy/prometheus.yml and by compose, and
// reading only metrics Herald exports.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { parse } from 'yaml'
import { build } from './helper.js'
import { scrape } from './helpers/metrics.js'
import { RedisServer } from './helpers/redis-server.js'

const RULES = 'deploy/prometheus/alerts.yml'
const RULE_TESTS = 'deploy/prometheus/alerts.test.yml'

interface Rule { alert: string, expr: string, labels?: Record<string, string>, annotations?: Record<string, string> }
const rules = (parse(readFileSync(RULES, 'utf8')) as { groups: Array<{ rules: Rule[] }> }).groups.flatMap((group) => group.rules)

const missingPromtool = spawnSync('promtool', ['--version']).error === undefined
  ? undefined
  : 'promtool is not installed: apt-get install -y prometheus (.ci/run does it for you)'

function promtool (...args: string[]): { status: number | null, output: string } {
  const run = spawnSync('promtool', args, { encoding: 'utf8', timeout: 60_000 })
  return { status: run.status, output: `${run.stdout}${run.stderr}` }
}

test('the rules cover what an operator must hear of, each with a severity and a summary', () => {
  assert.deepEqual(rules.map((rule) => rule.alert).sort(), [
    'HeraldClientsDropped', 'HeraldDispatchLag', 'HeraldInstanceDown', 'HeraldPublishesFailing', 'HeraldPublishesRefused',
    'HeraldRedisDown', 'HeraldReplaySaturated', 'HeraldSubscriberDropped'
  ])
  for (const rule of rules) {
    assert.ok(['page', 'ticket'].includes(rule.labels?.severity ?? ''), `${rule.alert} has severity page or ticket`)
    assert.ok(rule.annotations?.summary !== undefined && rule.annotations.description !== undefined, `${rule.alert} has a summary and a description`)
  }
})

test('promtool check rules accepts them, and promtool test rules fires each one where its test says', { skip: missingPromtool }, () => {
  const check = promtool('check', 'rules', RULES)
  assert.equal(check.status, 0, check.output)
  assert.match(check.output, new RegExp(`SUCCESS: ${rules.length} rules found`))
  const unit = promtool('test', 'rules', RULE_TESTS)
  assert.equal(unit.status, 0, unit.output)

  // Every alert has a case where it fires, not only cases where it stays quiet.
  const cases = (parse(readFileSync(RULE_TESTS, 'utf8')) as { tests: Array<{ alert_rule_test?: Array<{ alertname: string, exp_alerts: unknown[] }> }> }).tests
  const fired = new Set(cases.flatMap((unitCase) => unitCase.alert_rule_test ?? []).filter((expected) => expected.exp_alerts.length > 0).map((expected) => expected.alertname))
  assert.deepEqual(rules.map((rule) => rule.alert).filter((alert) => !fired.has(alert)), [], 'alerts no test fires')
})

test('deploy/prometheus.yml loads the rules (promtool check config), and compose mounts them where it looks', { skip: missingPromtool }, () => {
  const config = parse(readFileSync('deploy/prometheus.yml', 'utf8')) as { rule_files: string[] }
  assert.deepEqual(config.rule_files, ['prometheus/alerts.yml'])
  const check = promtool('check', 'config', 'deploy/prometheus.yml')
  assert.equal(check.status, 0, check.output)
  assert.match(check.output, new RegExp(`SUCCESS: ${rules.length} rules found`))
  const compose = parse(readFileSync('docker-compose.yml', 'utf8')) as { services: Record<string, { volumes?: string[] }> }
  const volumes = compose.services.prometheus?.volumes ?? []
  assert.ok(volumes.includes('./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro'))
  assert.ok(volumes.includes('./deploy/prometheus:/etc/prometheus/prometheus:ro'), 'the rules beside the config, as rule_files names them')
})

test('every metric the rules read is one a Herald instance exports', { timeout: 60_000 }, async (t) => {
  const redis = await RedisServer.start()
  t.after(async () => await redis.stop())
  const { app } = await build(t, { REDIS_URL: redis.url })
  const { text } = await scrape(app)
  const exported = new Set<string>()
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    exported.add(name as string)
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) exported.add(`${name as string}${suffix}`)
  }
  // `up` is Prometheus's own series about each scrape.
  const read = [...new Set(rules.flatMap((rule) => [...rule.expr.matchAll(/\b((?:herald|nodejs|process)_[a-z_]+)\b/g)].map((match) => match[1] as string)))]
  assert.ok(read.length >= 7, `the rules read ${read.join(', ')}`)
  assert.deepEqual(read.filter((name) => !exported.has(name)), [], `${RULES} reads metrics Herald does not export`)
  // And each label value a rule matches on exists.
  for (const reason of ['unavailable', 'error']) assert.match(text, new RegExp(`herald_publish_refusals_total\\{reason="${reason}"\\}`))
  assert.match(text, /herald_replay_slot_wait_seconds_bucket\{le="0\.1"\}/)
})
