// `npm run planted-bugs`: plants, one at a time, each bug that once slipped past the whole suite, in a copy of the
// project, and checks that the tests meant to catch it fail. A standing check that the guarantee tests can fail.
// Not part of `npm test` (it takes several minutes); run it after touching src/hub, src/transport or the tests.
// `npm run planted-bugs -- <text> …` runs only the bugs whose name, file or test file contains one of the texts.
//
// It fails loudly, before planting anything, when a bug's correct text is not in its file exactly once (a reformat
// or a rewrite moved it: re-point the bug). A bug counts as caught only when its tests pass without it (each test
// file and name pattern is run once unplanted first) and at least one of them fails with it.
import { spawnSync } from 'node:child_process'
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** name, file, what the correct code says, the bug, the test file, the tests' name pattern */
const BUGS = [
  ['read history before the SUBSCRIBE is confirmed', 'src/hub/session.ts', '    await Promise.all(topics.map(async (topic) => await this.source.listening(topic)))\n', '', 'test/guarantees.test.ts', 'confirmed the SUBSCRIBE'],
  ['trust ioredis\'s "ready" instead of our own re-SUBSCRIBE', 'src/transport/redis.ts', 'const subscribed = channels.length > 0 ? this.subscriber.ssubscribe(...channels) : Promise.resolve()', 'const subscribed = Promise.resolve()', 'test/guarantees.test.ts', 'own SUBSCRIBE'],
  ['do not hold live events while the subscriber connection is down', 'src/hub/hub.ts', '    for (const session of this.sessionsOf(topics)) session.hold(topics)\n  }', '  }', 'test/guarantees.test.ts', 'arrive before the catch-up'],
  ['publish function without MAXLEN', 'redis/herald.lua', "local entry = { 'XADD', history, 'MAXLEN', '~', HISTORY_SIZE, seq .. '-0',", "local entry = { 'XADD', history, seq .. '-0',", 'test/guarantees.test.ts', 'stays near HERALD_HISTORY_SIZE'],
  ['replay boundary: oldest retained > position + 2 instead of + 1', 'src/hub/replay.ts', 'if (read.oldest > after + 1 && read.head > after)', 'if (read.oldest > after + 2 && read.head > after)', 'test/guarantees.test.ts', 'exactly the last seen id'],
  ['replay boundary: head >= instead of >', 'src/hub/replay.ts', 'if (after > read.head)', 'if (after >= read.head)', 'test/guarantees.test.ts', 'exactly the last seen id'],
  ['held events not counted against the byte cap', 'src/hub/session.ts', '      state.held.push(live)\n      this.heldBytes += event.data.length\n', '      state.held.push(live)\n', 'test/guarantees.test.ts', 'stalled'],
  ['a heartbeat timer per stream', 'src/hub/hub.ts', '    this.sessions.add(session)\n', '    this.sessions.add(session)\n    setInterval(() => session.heartbeat(HEARTBEAT), this.options.heartbeatMs).unref()\n', 'test/stream.test.ts', 'shared timer'],
  ['a live event at the current position let through again', 'src/hub/session.ts', '      if (event.seq <= state.seq) return\n', '      if (event.seq < state.seq) return\n', 'test/broker-contract.test.ts', 'no gap and no duplicate'],
  ['an event on several of a stream\'s topics shown for each of them', 'src/hub/session.ts', '      if (shownFor !== state.topic) return\n', '', 'test/broker-contract.test.ts', 'several topics: each event once'],
  ['a new stream starts at the head read after its SUBSCRIBE', 'src/hub/session.ts', '      await fromHeads(this.topics, await (openingHeads ?? this.source.heads(this.topics)))', '      await fromHeads(this.topics, await this.source.heads(this.topics))', 'test/broker-contract.test.ts', 'new stream gets what is published'],
  ['a 16-character JWT secret accepted', 'src/config.ts', "description: 'an HS256 secret of at least 32 characters', minLength: 32", "description: 'an HS256 secret of at least 32 characters', minLength: 16", 'test/config.test.ts', 'JWT secret'],
  // Issue 15's mutation audit: each survived the whole suite.
  ['a topic\'s history expires a retention after its FIRST event (expiry not refreshed by a publish)', 'redis/herald.lua', "    redis.call('PEXPIRE', history, RETENTION_MS)", "    redis.call('PEXPIRE', history, RETENTION_MS, 'NX')", 'test/history.test.ts', 'redis: a busy topic'],
  ['Redis read script: a page\'s first entry not guaranteed (a big event skipped on replay)', 'redis/herald.lua', 'if k > count or (k > 1 and bytes + size > max_bytes) then', 'if k > count or (k > 0 and bytes + size > max_bytes) then', 'test/history.test.ts', 'redis: an event bigger'],
  ['memory history: a page\'s first event not guaranteed (a big event skipped on replay)', 'src/transport/topic-history.ts', '(events.length > 0 && bytes + event.data.length > maxBytes)', '(bytes + event.data.length > maxBytes)', 'test/history.test.ts', 'memory: an event bigger'],
  ['the lastEventId query beats the Last-Event-ID header (duplicates on every EventSource reconnect)', 'routes/stream.ts', "const lastEventId = typeof header === 'string' && header !== '' ? header : query.lastEventId", "const lastEventId = query.lastEventId ?? (typeof header === 'string' && header !== '' ? header : undefined)", 'test/stream.test.ts', 'beats the lastEventId'],
  ['Redis idempotency record kept for the history\'s retention, not its window', 'redis/herald.lua', "redis.call('SET', record, id, 'PX', IDEMPOTENCY_MS)", "redis.call('SET', record, id, 'PX', RETENTION_MS)", 'test/idempotency.test.ts', 'redis: an idempotency key'],
  ['memory idempotency records kept forever (and every key ever used kept)', 'src/transport/memory.ts', '    if (key !== undefined) this.forgetExpiredRecords(now)\n', '', 'test/idempotency.test.ts', 'memory'],
  ['stalled drops not counted in herald_clients_dropped_total', 'plugins/metrics.ts', "const DROP_REASONS = ['slow-client', 'stalled'] as const", "const DROP_REASONS = ['slow-client'] as const", 'test/stalled-client.test.ts', 'never reads'],
  ['a dropped HTTP/1.1 stream\'s socket ended instead of reset', 'plugins/event-stream.ts', '  else tcp.resetAndDestroy()', '  else tcp.end()', 'test/stalled-client.test.ts', 'never reads'],
  ['a dropped HTTP/1.1-over-TLS stream\'s socket ended instead of reset', 'plugins/event-stream.ts', '  else tcp.resetAndDestroy()', '  else tcp.end()', 'test/http2.test.ts', 'HTTP/1.1 over TLS'],
  ['an HTTP/2 session\'s TCP connection ended instead of reset at shutdown', 'src/server.ts', 'if (!tcp.destroyed) tcp.resetAndDestroy()', 'if (!tcp.destroyed) tcp.end()', 'test/http2.test.ts', 'shutdown does not wait'],
  ['client backoff that does not grow', 'client/src/backoff.ts', 'backoff.initialMs * 2 ** Math.max(0, failures - 1)', 'backoff.initialMs', 'test/client-stream-machine.test.ts', 'backoff|machine'],
  ['client backoff with no cap', 'client/src/backoff.ts', 'Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.max(0, failures - 1))', 'backoff.initialMs * 2 ** Math.max(0, failures - 1)', 'test/client-stream-machine.test.ts', 'backoff|machine'],
  ['client failure count not reset after an open', 'client/src/stream-machine.ts', '        this.failures = 0\n        this.authFailures = 0\n        this.everOpen = true', '        this.authFailures = 0\n        this.everOpen = true', 'test/client-stream-machine.test.ts', 'backoff|machine'],
  ['Redis channel messages parsed without checks (a line break in the type reaches the frame)', 'src/transport/redis-messages.ts', "  if (CONTROL.test(type)) return 'bad type'\n", '', 'test/redis-integrity.test.ts', 'no channel message'],
  ['a Redis restart keeps the epoch (lost acknowledged writes reuse ids)', 'redis/herald.lua', 'if not epoch or not seq or state[3] ~= boot then', 'if not epoch or not seq then', 'test/redis-integrity.test.ts', 'snapshot'],
]

const root = process.cwd()
const only = process.argv.slice(2)
const chosen = BUGS.filter(([name, file, , , testFile]) => only.length === 0 || only.some((wanted) => [name, file, testFile].some((text) => text.includes(wanted))))
if (chosen.length === 0) {
  console.error(`no planted bug's name, file or test file contains any of ${JSON.stringify(only)}`)
  process.exit(1)
}

// Every bug's text must be where it is planted, exactly once, before anything runs: a bug planted nowhere (or in
// the wrong one of two places) would be a check that cannot fail.
const unplantable = []
for (const [name, file, correct, bug] of chosen) {
  let source
  try {
    source = readFileSync(join(root, file), 'utf8')
  } catch {
    unplantable.push(`${name}: ${file} does not exist`)
    continue
  }
  const times = source.split(correct).length - 1
  if (correct === bug) unplantable.push(`${name}: the bug is the same text as the correct code`)
  else if (times !== 1) unplantable.push(`${name}: ${file} says ${JSON.stringify(correct)} ${times === 0 ? 'nowhere' : `${times} times`}`)
}
if (unplantable.length > 0) {
  console.error(`PLANTED-BUG CHECK BROKEN: ${unplantable.length} bug(s) cannot be planted, so they would be checked by nothing. Re-point each at today's code:\n  ${unplantable.join('\n  ')}`)
  process.exit(1)
}

const copy = mkdtempSync(join(tmpdir(), 'herald-planted-'))
for (const part of ['src', 'plugins', 'routes', 'test', 'public', 'client', 'redis', 'package.json', 'tsconfig.json']) cpSync(join(root, part), join(copy, part), { recursive: true })
symlinkSync(join(root, 'node_modules'), join(copy, 'node_modules'))

/** Runs the tests of a file whose names match a pattern; tests whose names do not match count as skipped. */
function runTests (testFile, pattern) {
  const run = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-timeout=120000', `--test-name-pattern=${pattern}`, testFile], { cwd: copy, encoding: 'utf8', timeout: 300_000 })
  const count = (what) => Number(new RegExp(`^# ${what} (\\d+)$`, 'm').exec(run.stdout)?.[1] ?? 0)
  if (process.env.DEBUG !== undefined) console.log(run.stdout.slice(-1500), run.stderr.slice(-1500))
  return { passed: count('pass'), failed: count('fail') + count('cancelled'), timedOut: run.error !== undefined, run }
}

let problems = 0
try {
  // The guard tests must pass on the code as it is, or a failure with the bug planted proves nothing.
  const baseline = new Map()
  for (const [, , , , testFile, pattern] of chosen) {
    const key = `${testFile} /${pattern}/`
    if (baseline.has(key)) continue
    const { passed, failed, timedOut } = runTests(testFile, pattern)
    const healthy = !timedOut && failed === 0 && passed > 0
    baseline.set(key, healthy)
    if (!healthy) {
      problems++
      const why = timedOut ? 'timed out' : passed + failed === 0 ? 'the pattern matches no test' : `${failed} failed`
      console.log(`BROKEN GUARD: ${key} without any bug planted: ${why}`)
    }
  }

  for (const [name, file, correct, bug, testFile, pattern] of chosen) {
    const key = `${testFile} /${pattern}/`
    if (baseline.get(key) !== true) {
      console.log(`NOT CHECKED: ${name} (${key} does not pass without it)`)
      continue
    }
    const path = join(copy, file)
    const original = readFileSync(path, 'utf8')
    writeFileSync(path, original.replace(correct, bug))
    const started = performance.now()
    const { failed, timedOut } = runTests(testFile, pattern)
    const seconds = ((performance.now() - started) / 1000).toFixed(0)
    writeFileSync(path, original)
    // A caught bug is at least one failure; a run that had to be killed is a guard that does not fail fast.
    const caught = failed > 0 && !timedOut
    if (!caught) problems++
    console.log(`${caught ? 'caught' : timedOut ? 'TIMED OUT (not failing fast)' : 'MISSED'}: ${name} (${key}, ${seconds} s)`)
  }
} finally {
  rmSync(copy, { recursive: true, force: true })
}
console.log(problems === 0 ? `all ${chosen.length} planted bugs caught` : `${problems} problem(s) among ${chosen.length} planted bugs`)
process.exit(problems === 0 ? 0 : 1)
