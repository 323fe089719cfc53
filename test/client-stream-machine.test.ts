import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ArrivalOrder } from '../client/src/arrival-order.js'
import { backoffDelay, DEFAULT_BACKOFF } from '../client/src/backoff.js'
import { SseParser, type SseMessage } from '../client/src/sse-parser.js'
import { AUTH_ATTEMPTS, StreamMachine, type Outcome } from '../client/src/stream-machine.js'
import { refreshDelay } from '../client/src/token.js'

// The browser client's pure parts, in Node: no EventSource, no fetch, no browser. Randomness is fixed, so each
// figure is exact: `random = 0.5` makes the jitter factor exactly 1.
const middle = (): number => 0.5
const backoff = { initialMs: 1_000, maxMs: 30_000 }

test('backoff: doubles from initialMs with each failure', () => {
  const delays = [1, 2, 3, 4, 5].map((failures) => backoffDelay(failures, backoff, middle))
  assert.deepEqual(delays, [1_000, 2_000, 4_000, 8_000, 16_000])
})

test('backoff: capped at maxMs however many failures (no 8-minute waits)', () => {
  for (const failures of [6, 7, 10, 20, 50, 1_000]) {
    assert.equal(backoffDelay(failures, backoff, middle), 30_000, `${failures} failures`)
    assert.ok(backoffDelay(failures, backoff, () => 0.999_999) <= 45_000, 'the jitter stays within 1.5 × maxMs')
  }
  assert.equal(backoffDelay(9, DEFAULT_BACKOFF, middle), DEFAULT_BACKOFF.maxMs)
})

test('backoff: jittered over 0.5-1.5 times the delay', () => {
  assert.equal(backoffDelay(3, backoff, () => 0), 2_000)
  assert.equal(backoffDelay(3, backoff, () => 0.999_999), 6_000)
  // Zero or fewer failures (a first retry) waits the initial delay, never less.
  assert.equal(backoffDelay(0, backoff, middle), 1_000)
})

function machine (): StreamMachine {
  return new StreamMachine({ backoff, random: middle })
}

const dropped: Outcome = { kind: 'network', message: 'Failed to fetch' }

test('machine: delays grow with failures in a row, up to the cap', () => {
  const stream = machine()
  const delays = Array.from({ length: 9 }, () => stream.next(dropped).retryInMs)
  assert.deepEqual(delays, [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000, 30_000])
})

test('machine: the failure count resets after a successful open, so the next drop waits the initial delay again', () => {
  const stream = machine()
  for (let index = 0; index < 6; index++) stream.next({ kind: 'status', status: 502 })
  assert.equal(stream.attempt, 6)
  assert.deepEqual(stream.next({ kind: 'open' }), { state: { state: 'open', attempt: 0 } })
  assert.equal(stream.attempt, 0)
  const after = stream.next(dropped)
  assert.equal(after.retryInMs, 1_000, 'the first failure after an open waits initialMs')
  assert.equal(after.state.attempt, 1)
  assert.equal(stream.next(dropped).retryInMs, 2_000)
})

test('machine: attempt counts every failure in a row, of any kind, and says connecting until first open, reconnecting after', () => {
  const stream = machine()
  assert.deepEqual(stream.attempting(), { state: 'connecting', attempt: 0 })
  stream.next(dropped)
  assert.deepEqual(stream.attempting(), { state: 'connecting', attempt: 1 })
  stream.next({ kind: 'refused', reason: 'instance-full', retryMs: 4_213 })
  stream.next({ kind: 'token-error', message: 'offline' })
  assert.deepEqual(stream.attempting(), { state: 'connecting', attempt: 3 })
  stream.next({ kind: 'open' })
  assert.deepEqual(stream.attempting(), { state: 'reconnecting', attempt: 0 })
})

test('machine: a refusal is refused, with its reason and the server\'s retryMs, and never open', () => {
  const stream = machine()
  const first = stream.next({ kind: 'refused', reason: 'instance-full', retryMs: 4_213 })
  assert.deepEqual(first, { state: { state: 'refused', attempt: 1, reason: 'instance-full', retryInMs: 4_213 }, retryInMs: 4_213 })
  const second = stream.next({ kind: 'refused', reason: 'draining', retryMs: 700 })
  assert.deepEqual(second.state, { state: 'refused', attempt: 2, reason: 'draining', retryInMs: 700 })
})

test('machine: a stream that was open and ended is tried again after the server\'s retry:, or the backoff without one', () => {
  const stream = machine()
  stream.next({ kind: 'open' })
  assert.deepEqual(stream.next({ kind: 'ended', retryMs: 1_500 }), { state: { state: 'reconnecting', attempt: 1, retryInMs: 1_500 }, retryInMs: 1_500 })
  stream.next({ kind: 'open' })
  assert.equal(stream.next({ kind: 'ended' }).retryInMs, 1_000)
})

test('machine: a 400 stops at once, with the server\'s code and message', () => {
  const step = machine().next({ kind: 'status', status: 400, code: 'HERALD_BAD_TOPIC', message: 'bad topic "a b"', withToken: true })
  assert.deepEqual(step, { state: { state: 'rejected', attempt: 1, status: 400, code: 'HERALD_BAD_TOPIC', message: 'bad topic "a b"', stopped: true } })
})

test('machine: a 401 or 403 without a token stops at once: no new attempt can change the answer', () => {
  for (const [status, state] of [[401, 'unauthorized'], [403, 'forbidden']] as const) {
    const step = machine().next({ kind: 'status', status, code: 'HERALD_TOKEN_MISSING', withToken: false })
    assert.equal(step.retryInMs, undefined)
    assert.deepEqual(step.state, { state, attempt: 1, status, code: 'HERALD_TOKEN_MISSING', stopped: true })
  }
})

test(`machine: a 401 with a token is tried with a new token, ${AUTH_ATTEMPTS} attempts in all, then stops and says so`, () => {
  const stream = machine()
  const rejected: Outcome = { kind: 'status', status: 401, code: 'HERALD_TOKEN_INVALID', message: 'the token is malformed', withToken: true }
  const steps = Array.from({ length: AUTH_ATTEMPTS }, () => stream.next(rejected))
  for (const step of steps.slice(0, -1)) {
    assert.equal(step.state.state, 'unauthorized')
    assert.equal(step.state.stopped, undefined)
    assert.ok(step.retryInMs !== undefined)
  }
  assert.deepEqual(steps.at(-1), {
    state: { state: 'unauthorized', attempt: AUTH_ATTEMPTS, status: 401, code: 'HERALD_TOKEN_INVALID', message: 'the token is malformed', stopped: true }
  })
  // A 401 after the stream opened in between starts a new count: the token expired and the provider's next one works.
  const again = machine()
  for (let round = 0; round < 5; round++) {
    assert.equal(again.next(rejected).state.stopped, undefined, `round ${round}`)
    again.next({ kind: 'open' })
  }
})

test('machine: a token provider that fails is token-error with its message, tried again with the backoff', () => {
  const stream = machine()
  const first = stream.next({ kind: 'token-error', message: 'the token provider returned number, not a string' })
  assert.deepEqual(first, { state: { state: 'token-error', attempt: 1, message: 'the token provider returned number, not a string', retryInMs: 1_000 }, retryInMs: 1_000 })
  assert.equal(stream.next({ kind: 'token-error', message: 'offline' }).retryInMs, 2_000)
})

test('machine: a 502 from a balancer or a network error is retried with the backoff, and says its status', () => {
  const stream = machine()
  stream.next({ kind: 'open' })
  assert.deepEqual(stream.next({ kind: 'status', status: 502 }), { state: { state: 'reconnecting', attempt: 1, status: 502, retryInMs: 1_000 }, retryInMs: 1_000 })
  assert.deepEqual(stream.next(dropped).state, { state: 'reconnecting', attempt: 2, message: 'Failed to fetch', retryInMs: 2_000 })
})

test('machine: reset() starts over (a new subscription after the client gave up)', () => {
  const stream = machine()
  stream.next({ kind: 'open' })
  stream.next({ kind: 'status', status: 401, withToken: true })
  stream.reset()
  assert.deepEqual(stream.attempting(), { state: 'connecting', attempt: 0 })
  for (let index = 1; index < AUTH_ATTEMPTS; index++) assert.equal(stream.next({ kind: 'status', status: 401, withToken: true }).state.stopped, undefined)
})

function parseAll (chunks: string[]): { messages: SseMessage[], parser: SseParser } {
  const messages: SseMessage[] = []
  const parser = new SseParser((message) => messages.push(message))
  for (const chunk of chunks) parser.push(chunk)
  return { messages, parser }
}

test('parser: Herald\'s refusal, as one chunk and byte by byte', () => {
  const body = ': herald\nretry: 4213\nevent: herald.unavailable\ndata: {"reason":"instance-full","retryMs":4213}\n\n'
  for (const chunks of [[body], [...body]]) {
    const { messages, parser } = parseAll(chunks)
    assert.deepEqual(messages, [{ type: 'herald.unavailable', data: '{"reason":"instance-full","retryMs":4213}', id: '' }])
    assert.equal(parser.retryMs, 4213)
  }
})

test('parser: ids are opaque strings kept as they come; CRLF and CR line ends, split anywhere; comments and data-less blocks dispatch nothing', () => {
  const id = 'v2.chat~7.news~12_a-b'.repeat(4)
  const text = `: herald\r\nretry: 1500\r\n\r\nid: ${id}\revent: note\rdata: a\rdata: b\r\r: heartbeat\n\nid: x\n\ndata: c\n\n`
  for (let cut = 0; cut <= text.length; cut++) {
    const { messages } = parseAll([text.slice(0, cut), text.slice(cut)])
    assert.deepEqual(messages, [{ type: 'note', data: 'a\nb', id }, { type: 'message', data: 'c', id: 'x' }], `cut at ${cut}`)
  }
})

// Ids in the lead's multi-topic form: opaque, long, with '.' and '~'. Nothing may parse or compare them as text.
const opaque = (n: number): string => `v2.chat~${n}.news~${1000 - n}_${'q'.repeat(40)}`

test('arrival order: ids are ranked as received; an id received before is not news to a reader past it', () => {
  const order = new ArrivalOrder()
  const ranks = [5, 6, 7].map((n) => order.record(opaque(n)))
  assert.deepEqual(ranks, [0, 1, 2])
  assert.equal(order.record(opaque(6)), 1, 'the same id, the same rank')
  assert.equal(order.isNews(order.record(opaque(6)), opaque(7)), false, 'a replayed id behind the reader')
  assert.equal(order.isNews(order.record(opaque(7)), opaque(7)), false, 'the reader\'s own position')
  assert.equal(order.isNews(order.record(opaque(8)), opaque(7)), true, 'a new id')
  assert.equal(order.isNews(0, undefined), true, 'no position yet')
  assert.equal(order.isNews(0, 'from-a-previous-visit'), true, 'a position from elsewhere: Herald sends only what follows it')
  // Lexical order means nothing: '~10' sorts before '~9'.
  assert.equal(order.earlier(opaque(10), opaque(9)), opaque(10), 'an unknown id may be further back')
  assert.equal(order.earlier(opaque(7), opaque(5)), opaque(5))
  assert.equal(order.earlier(opaque(5), opaque(7)), opaque(5))
  assert.equal(order.earlier(undefined, opaque(5)), opaque(5))
})

test('arrival order: a stream reopened from further back places the replayed ids it never saw before the ones it had', () => {
  const order = new ArrivalOrder()
  // A reader started at opaque(3) and got 4..6; another asks for history from opaque(1).
  for (const n of [4, 5, 6]) order.record(opaque(n))
  order.beginCatchUp(opaque(1), opaque(6))
  const replayed = [2, 3, 4, 5, 6].map((n) => order.record(opaque(n)))
  // Not news to the reader at 6, nor at 4 for 2 and 3: they come before what it had.
  assert.deepEqual(replayed.map((rank) => order.isNews(rank, opaque(6))), [false, false, false, false, false])
  assert.deepEqual(replayed.map((rank) => order.isNews(rank, opaque(4))), [false, false, false, true, true])
  // The catch-up ended at 6: what follows is new.
  assert.equal(order.isNews(order.record(opaque(7)), opaque(6)), true)
  // Unknown ids between two known ones keep their order.
  const second = new ArrivalOrder()
  for (const n of [10, 20]) second.record(opaque(n))
  second.beginCatchUp(opaque(10), opaque(20))
  const between = [11, 12, 13].map((n) => second.record(opaque(n)))
  assert.ok(between[0]! > second.rank(opaque(10))! && between[0]! < between[1]! && between[1]! < between[2]! && between[2]! < second.rank(opaque(20))!)
  // Recording a known id again (a leader's page, a moment later) does not move the replay back.
  second.beginCatchUp(opaque(10), opaque(20))
  const x = second.record('x')
  second.record(opaque(10))
  assert.ok(second.record('y') > x)
})

test('arrival order: remembers a bounded number of ids', () => {
  const order = new ArrivalOrder(3)
  for (const n of [1, 2, 3, 4]) order.record(opaque(n))
  assert.equal(order.rank(opaque(1)), undefined)
  assert.equal(order.rank(opaque(4)), 3)
})

function jwt (claims: Record<string, number>): string {
  return `h.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.s`
}

test('token refresh: a fifth of the lifetime before expiry, at most a minute, at least 2 s or half the lifetime', () => {
  const now = 1_000_000_000_000
  const at = (lifetimeS: number): number | undefined => refreshDelay(jwt({ iat: now / 1000, exp: now / 1000 + lifetimeS }), now)
  assert.equal(at(3600), 3_540_000, 'an hour: a minute before')
  assert.equal(at(100), 80_000, '100 s: a fifth before')
  assert.equal(at(5), 3_000, '5 s: 2 s before')
  assert.equal(at(3), 1_500, '3 s: half before')
  assert.equal(refreshDelay(jwt({ iat: now / 1000 }), now), undefined, 'no exp')
  assert.equal(refreshDelay('not-a-jwt', now), undefined)
})
