// `npm run planted-bugs`: plants, one at a time, each bug that once slipped past the whole suite, in a copy of the
// project, and checks that the tests meant to catch it fail. A standing check that the guarantee tests can fail.
// Not part of `npm test` (it takes a few minutes); run it after touching src/hub, src/transport or the tests.
import { spawnSync } from 'node:child_process'
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** name, file, what the correct code says, the bug, the test file, the tests' name pattern */
const BUGS = [
  ['read history before the SUBSCRIBE is confirmed', 'src/hub/hub.ts', '    await Promise.all(listening)\n', '', 'test/guarantees.test.ts', 'confirmed the SUBSCRIBE'],
  ['trust ioredis\'s "ready" instead of our own re-SUBSCRIBE', 'src/transport/redis.ts', 'const subscribed = channels.length > 0 ? this.subscriber.subscribe(...channels) : Promise.resolve()', 'const subscribed = Promise.resolve()', 'test/guarantees.test.ts', 'own SUBSCRIBE'],
  ['do not hold live events while the subscriber connection is down', 'src/hub/hub.ts', '    for (const subscription of this.subscriptions) subscription.hold()\n  }', '  }', 'test/guarantees.test.ts', 'arrive before the catch-up'],
  ['publish script without MAXLEN', 'src/transport/redis-scripts.ts', "redis.call('XADD', KEYS[i], 'MAXLEN', '~', size, seq .. '-0'", "redis.call('XADD', KEYS[i], seq .. '-0'", 'test/guarantees.test.ts', 'stays near HERALD_HISTORY_SIZE'],
  ['replay boundary: trimmed >= instead of >', 'src/hub/replay.ts', 'if (history.trimmedThrough > after)', 'if (history.trimmedThrough >= after)', 'test/guarantees.test.ts', 'exactly the last seen id'],
  ['replay boundary: head >= instead of >', 'src/hub/replay.ts', 'if (after > read.head)', 'if (after >= read.head)', 'test/guarantees.test.ts', 'exactly the last seen id'],
  ['held events not counted against the byte cap', 'src/hub/subscription.ts', '      this.heldBytes += event.frame.length\n', '', 'test/guarantees.test.ts', 'stalled'],
  ['a heartbeat timer per stream', 'src/hub/hub.ts', '    this.subscriptions.add(subscription)\n', '    this.subscriptions.add(subscription)\n    setInterval(() => subscription.heartbeat(HEARTBEAT), this.options.heartbeatMs).unref()\n', 'test/stream.test.ts', 'shared timer'],
  ['a live event at the current position let through again (an event on two topics twice)', 'src/hub/subscription.ts', '    } else if (event.id > this.position) {', '    } else if (event.id >= this.position) {', 'test/broker-contract.test.ts', 'several topics: each event once'],
  ['a new stream starts at the head read after its SUBSCRIBE', 'src/hub/hub.ts', '      const opening = subscription.openingHead ?? this.transport.head()', '      const opening = this.transport.head()', 'test/broker-contract.test.ts', 'new stream gets what is published'],
  ['a 16-character JWT secret accepted', 'src/config.ts', "description: 'an HS256 secret of at least 32 characters', minLength: 32", "description: 'an HS256 secret of at least 32 characters', minLength: 16", 'test/config.test.ts', 'JWT secret']
]

const root = process.cwd()
const copy = mkdtempSync(join(tmpdir(), 'herald-planted-'))
for (const part of ['src', 'plugins', 'routes', 'test', 'public', 'package.json', 'tsconfig.json']) cpSync(join(root, part), join(copy, part), { recursive: true })
symlinkSync(join(root, 'node_modules'), join(copy, 'node_modules'))

let missed = 0
try {
  for (const [name, file, correct, bug, testFile, pattern] of BUGS) {
    const path = join(copy, file)
    const original = readFileSync(path, 'utf8')
    if (!original.includes(correct)) throw new Error(`${file} no longer says ${JSON.stringify(correct)}: update ${name}`)
    writeFileSync(path, original.replace(correct, bug))
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', `--test-name-pattern=${pattern}`, testFile], { cwd: copy, encoding: 'utf8', timeout: 300_000 })
    writeFileSync(path, original)
    // Tests whose names do not match the pattern count as skipped: a caught bug is at least one failure.
    const caught = Number(/^# fail (\d+)$/m.exec(run.stdout)?.[1] ?? 0) > 0
    if (!caught) missed++
    if (process.env.DEBUG !== undefined) console.log(run.stdout.slice(-1500), run.stderr.slice(-1500))
    console.log(`${caught ? 'caught' : 'MISSED'}: ${name} (${testFile} /${pattern}/)`)
  }
} finally {
  rmSync(copy, { recursive: true, force: true })
}
console.log(missed === 0 ? `all ${BUGS.length} planted bugs caught` : `${missed} of ${BUGS.length} planted bugs not caught`)
process.exit(missed === 0 ? 0 : 1)
