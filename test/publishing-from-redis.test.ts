// docs/publishing-from-redis.md's examples, run as they stand (extracted from the page) against a real Redis and a
// real Herald: an event published from Python, redis-cli or plain ioredis gets the next id of its topic, as an HTTP
// publish does, and has the same history, resume and idempotency; bad calls are refused and change nothing.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import type { Redis } from 'ioredis'
import { build, publish, type Herald } from './helper.js'
import { epochOf, seq } from './helpers/event-ids.js'
import { RedisServer } from './helpers/redis-server.js'
import { openStream, payloads, type StreamClient } from './helpers/sse-client.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const page = readFileSync(join(root, 'docs/publishing-from-redis.md'), 'utf8')

/** The code block that follows `<!-- example: name -->` on the page. */
function example (name: string): string {
  const match = new RegExp(`<!-- example: ${name} -->\\n\`\`\`\\w+\\n([\\s\\S]*?)\`\`\``).exec(page)
  assert.ok(match !== null, `the page has the example ${name}`)
  return match[1] as string
}

/** A Python 3 with redis-py: the one on PATH, or Debian's (python3-redis), which a pyenv python3 may hide. */
function python (): string {
  for (const candidate of ['python3', '/usr/bin/python3']) {
    if (spawnSync(candidate, ['-c', 'import redis; redis.Redis.fcall'], { cwd: tmpdir() }).status === 0) return candidate
  }
  throw new Error('no python3 with redis-py (4.1 or newer): apt-get install -y python3-redis')
}

let redis: RedisServer
let admin: Redis
let herald: Herald
// Scripts run from a directory of their own: the repository's redis/ folder would shadow redis-py.
const scratch = mkdtempSync(join(tmpdir(), 'herald-examples-'))
before(async () => {
  redis = await RedisServer.start()
  admin = redis.client()
  // The default prefix, herald:, which the examples name.
  herald = await build(undefined, { REDIS_URL: redis.url })
})
after(async () => {
  await herald.app.close()
  admin.disconnect()
  await redis.stop()
  rmSync(scratch, { recursive: true, force: true })
})

/** Runs an example with REDIS_URL pointing at the test's Redis; returns its stdout lines. */
function run (command: string, args: string[], input: string, cwd = scratch): string[] {
  const done = spawnSync(command, args, { input, cwd, encoding: 'utf8', env: { ...process.env, REDIS_URL: redis.url }, timeout: 30_000 })
  assert.equal(done.error, undefined, `${command}: ${String(done.error)}`)
  assert.equal(done.stderr, '', `${command} wrote to stderr`)
  assert.equal(done.status, 0, `${command} exited with ${String(done.status)}`)
  return done.stdout.split('\n').filter((line) => line !== '')
}

const runPython = (name: string) => run(python(), ['-'], example(name))
const runShell = (name: string) => run('bash', ['-s'], example(name))
// From the repository, where ioredis resolves; the example imports nothing of Herald's.
const runNode = (name: string) => run(process.execPath, ['--input-type=module', '-'], example(name), root)

/** Every key Herald has in Redis and what it holds (an expiry aside): equal snapshots mean nothing changed. */
async function snapshot (): Promise<Record<string, unknown>> {
  const state: Record<string, unknown> = {}
  for (const key of (await admin.keys('herald:*')).sort()) {
    const type = await admin.type(key)
    state[key] = type === 'hash'
      ? await admin.hgetall(key)
      : type === 'stream' ? await admin.xrange(key, '-', '+') : type === 'string' ? await admin.get(key) : type
  }
  return state
}

async function stream (query: string, headers: Record<string, string> = {}): Promise<StreamClient> {
  const client = await openStream(`${herald.url}/v1/stream?${query}`, headers)
  after(() => client.close())
  return client
}

test('the examples publish as POST /v1/events does: the same ids, history, resume and idempotency, and refused calls change nothing', async () => {
  const chat = await stream('topic=chat')
  const both = await stream('topic=chat&topic=news')
  const http = await publish(herald.url, { topic: 'chat', type: 'message', data: { user: 'eve', text: 'hello over HTTP' }, idempotencyKey: 'http-hello-1' })
  assert.equal(http.status, 202)
  const epoch = epochOf(http.body.id)
  assert.equal(seq(http.body.id), 1)

  // Python: the next id of the topic, in the same epoch; run again, the same id as a duplicate.
  const [fromPython] = runPython('python')
  assert.equal(fromPython, `${epoch}-2 0`)
  assert.deepEqual(runPython('python'), [`${epoch}-2 1`], 'the idempotency key: the same id, nothing sent')
  // The keys are shared with the HTTP API: one record per key and topic, whoever publishes.
  const httpRetry = await publish(herald.url, { topic: 'chat', data: { user: 'ada', text: 'hello from Python' }, idempotencyKey: 'py-hello-1' })
  assert.deepEqual(httpRetry.body, { id: `${epoch}-2`, ids: [`${epoch}-2`], topics: ['chat'], duplicate: true })

  // redis-cli prints the array one element a line when its output is not a terminal.
  assert.deepEqual(runShell('redis-cli'), [`${epoch}-3`, '0'])
  assert.deepEqual(runNode('node'), [`${epoch}-4 0`])
  const [onChat, onNews] = (runPython('python-topics')[0] ?? '').split(' ')
  assert.equal(onChat, `${epoch}-5`)
  assert.equal(seq(onNews as string), 1, 'news numbers its own events')

  const expected = [
    { user: 'eve', text: 'hello over HTTP' },
    { user: 'ada', text: 'hello from Python' },
    { user: 'bob', text: 'hello from redis-cli' },
    { user: 'cy', text: 'hello from Node' },
    { text: 'on two topics' }
  ]
  const live = await chat.waitForEvents(5)
  assert.deepEqual(live.map((event) => event.id), [1, 2, 3, 4, 5].map((n) => `${epoch}-${n}`), 'live: each id of the topic, in order')
  assert.deepEqual(payloads(live), expected)
  assert.deepEqual(live.map((event) => event.event), ['message', 'message', 'message', 'message', 'message'])
  const several = await both.waitForEvents(5)
  assert.deepEqual(payloads(several), expected, 'a stream on both topics shows the event on both once')

  // History: the same events under the same ids, however they were published.
  const replay = await stream('topic=chat&lastEventId=0')
  const replayed = await replay.waitForEvents(5)
  assert.deepEqual(replayed.map((event) => [event.id, event.event, event.data]), live.map((event) => [event.id, event.event, event.data]))
  // Resume: after the Python event, the rest.
  const resumed = await stream('topic=chat', { 'last-event-id': `${epoch}-2` })
  assert.deepEqual(payloads(await resumed.waitForEvents(3)), expected.slice(2))

  // Refused calls: each says what is wrong, and Redis holds exactly what it held.
  const before = await snapshot()
  const refusals = runShell('redis-cli-refused')
  assert.deepEqual(refusals, [
    'HERALD_INVALID data: expected JSON text',
    'HERALD_INVALID topic: expected herald:{<topic>}:m with a topic of 1-256 characters from A-Z a-z 0-9 and - _ . ~ : @ /',
    'HERALD_INVALID type: expected 1-128 characters with no control characters, not starting with herald.',
    'HERALD_INVALID topics: chat is named twice'
  ])
  // The page shows what a terminal shows: the same errors, marked (error).
  for (const refusal of refusals) assert.ok(page.includes(`(error) ${refusal}\n`), `the page shows ${refusal}`)
  assert.deepEqual(await snapshot(), before, 'nothing changed in Redis')
  const next = await publish(herald.url, { topic: 'chat', data: 'after' })
  assert.equal(next.body.id, `${epoch}-6`, 'no id was spent')
  await chat.waitForEvents(6)
  await new Promise((resolve) => setTimeout(resolve, 100))
  assert.deepEqual(payloads(chat.events).slice(5), ['after'], 'nothing of a refused call was sent')
})
