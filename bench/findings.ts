/**
 * `npm run findings -- <n[,n…]|all>`: measures, after the fixes, each of the 8 findings of issue 9 ("Hold up under
 * hostile clients, heavy load and Redis failures") at the issue's own scale where this 2-core machine allows it:
 * real redis-server and Herald processes on loopback, real clients in this process. Prints one figure line per
 * finding and writes bench/results/findings.md (a partial run: findings-partial.md, not committed). A measuring
 * script, not a test: no figure makes it fail, but a finding that could not be measured does (exit 1).
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { bigPayloads } from './findings/big-payloads.js'
import { clientLimits } from './findings/client-limits.js'
import { loadAverage } from './findings/host.js'
import { hungRedis } from './findings/hung-redis.js'
import { killEverything, Lab, type Finding, type Measured } from './findings/lab.js'
import { neverReaders } from './findings/never-readers.js'
import { redisKeys } from './findings/redis-keys.js'
import { redisRestart } from './findings/redis-restart.js'
import { refusalRetry } from './findings/refusal-retry.js'
import { replayStorm } from './findings/replay-storm.js'
import { raiseDescriptorLimit } from './processes.js'
import { machineInfo } from './report.js'
import { root } from './systems.js'

const FINDINGS: Finding[] = [replayStorm, redisRestart, redisKeys, hungRedis, neverReaders, clientLimits, refusalRetry, bigPayloads]
const USAGE = `usage: npm run findings -- <n[,n…]|all>   (n: ${FINDINGS.map((finding) => finding.number).join(', ')})`

interface Outcome {
  finding: Finding
  measured?: Measured
  error?: string
  seconds: number
  loadBefore: string
  loadAfter: string
}

const argument = process.argv[2] ?? ''
const wanted = argument === 'all' ? FINDINGS.map((finding) => finding.number) : argument.split(',').filter(Boolean).map(Number)
const chosen = wanted.map((number) => FINDINGS.find((finding) => finding.number === number))
if (wanted.length === 0 || chosen.some((finding) => finding === undefined)) {
  console.error(USAGE)
  process.exit(2)
}

let current: Lab | undefined
process.on('exit', killEverything)
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    process.stderr.write(`\nfindings: ${signal}; stopping the processes it started\n`)
    const stopping = current?.close() ?? Promise.resolve()
    Promise.race([stopping, new Promise((resolve) => setTimeout(resolve, 5_000))]).finally(() => process.exit(130))
  })
}

process.chdir(root)
raiseDescriptorLimit()
const startedAt = Date.now()
const loadAtStart = loadAverage()
const outcomes: Outcome[] = []
for (const finding of chosen as Finding[]) {
  const lab = new Lab()
  current = lab
  const loadBefore = loadAverage()
  const began = Date.now()
  process.stderr.write(`finding ${finding.number}: ${finding.title} (load ${loadBefore}) …\n`)
  let timer: NodeJS.Timeout | undefined
  const outcome: Partial<Outcome> = { finding, loadBefore }
  try {
    const overdue = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`not done in ${finding.limitSeconds} s`)), finding.limitSeconds * 1000)
    })
    outcome.measured = await Promise.race([finding.measure(lab), overdue])
  } catch (error) {
    outcome.error = (error as Error).stack ?? String(error)
  } finally {
    clearTimeout(timer)
    await lab.close()
  }
  outcome.seconds = (Date.now() - began) / 1000
  outcome.loadAfter = loadAverage()
  outcomes.push(outcome as Outcome)
  console.log(outcome.measured === undefined
    ? `finding ${finding.number}: FAILED: ${outcome.error?.split('\n')[0] ?? ''}`
    : `finding ${finding.number}: ${outcome.measured.figures}`)
}
current = undefined

const failed = outcomes.filter((outcome) => outcome.error !== undefined)
const machine = machineInfo(false, 1)
const report = [
  '# Issue 9\'s findings, measured after the fixes',
  '',
  `${machine.date} · ${machine.cpu} · ${machine.cores} cores · Linux ${machine.kernel} · Node ${machine.node} · ${machine.redis} · Herald ${machine.commit} · ` +
    `\`npm run findings -- ${argument}\` · ${Math.round((Date.now() - startedAt) / 1000)} s`,
  '',
  `Load average (1, 5, 15 min) at the start: ${loadAtStart}; at the end: ${loadAverage()}. The machine is shared with other engineers' test runs, ` +
    'so latency figures carry their noise: each finding lists the load before and after it.',
  '',
  'Every process is real and on loopback: redis-server (test/helpers/redis-server.ts), Herald as `node --import tsx src/server.ts` ' +
    '(test/helpers/herald-process.ts) with its default configuration unless a finding says otherwise, and clients in the script\'s own process.',
  '',
  '| # | finding | before the fixes | after (this run) |',
  '| --- | --- | --- | --- |',
  ...outcomes.map(({ finding, measured }) => `| ${finding.number} | ${finding.title} | ${finding.before} | ${measured?.figures ?? '**could not be measured**'} |`),
  '',
  ...outcomes.flatMap(({ finding, measured, error, seconds, loadBefore, loadAfter }) => [
    `## ${finding.number}. ${finding.title}`,
    '',
    `Before: ${finding.before}.`,
    '',
    ...(measured === undefined ? ['**Could not be measured:**', '', '```', error ?? '', '```'] : measured.details.map((line) => `- ${line}`)),
    '',
    `_${seconds.toFixed(0)} s; load ${loadBefore} before, ${loadAfter} after._`,
    ''
  ])
].join('\n')
mkdirSync(`${root}bench/results`, { recursive: true })
const file = `bench/results/${argument === 'all' ? 'findings' : 'findings-partial'}.md`
writeFileSync(`${root}${file}`, report)
process.stderr.write(`wrote ${file}\n`)
if (failed.length > 0) {
  console.error(`findings: ${failed.length} of ${outcomes.length} could not be measured: ${failed.map((outcome) => outcome.finding.number).join(', ')}`)
  process.exit(1)
}
process.exit(0)
