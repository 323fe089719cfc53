import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { planTopic, type TopicStart } from '../src/hub/replay.js'
import { encodeStreamId, maxStreamIdLength, parseStreamId, topicTag, type Position } from '../src/protocol.js'
import { TopicHistory } from '../src/transport/topic-history.js'
import type { TopicRead } from '../src/transport/transport.js'

const event = (seq: number, time = 1_000, epoch = 'e1') => ({ seq, epoch, data: String(seq), time })
const resume = (seq: number, epoch = 'e1'): TopicStart => ({ epoch, seq, live: false })
const read = (head: number, events: TopicRead['events'], { epoch = 'e1', oldest = events[0]?.seq ?? head + 1, full = false } = {}): TopicRead =>
  ({ epoch, head, oldest, events, full })

test('stream ids: a single topic\'s is its position; several topics carry a tagged position each, and read back', () => {
  assert.equal(encodeStreamId(['abcd'], [{ epoch: 'm5x8k2qz3f', seq: 42 }]), 'm5x8k2qz3f-42')
  const topics = ['chat', 'users/42/inbox', 'alerts']
  const positions: Position[] = [{ epoch: 'e1', seq: 7 }, { epoch: '', seq: 0 }, { epoch: 'zz9', seq: 1 }]
  const id = encodeStreamId(topics.map(topicTag), positions)
  assert.equal(id, `${topicTag('chat')}:e1-7,${topicTag('users/42/inbox')}:,${topicTag('alerts')}:zz9-1`)
  const parsed = parseStreamId(id, topics)
  assert.equal(parsed.kind, 'positions')
  if (parsed.kind !== 'positions') return
  assert.deepEqual(parsed.positions, new Map<string, Position | null>([['chat', { epoch: 'e1', seq: 7 }], ['users/42/inbox', null], ['alerts', { epoch: 'zz9', seq: 1 }]]))
  // Another topic set: the topics both have are resumed, the others are absent (they start at the head).
  const other = parseStreamId(id, ['alerts', 'new'])
  assert.deepEqual(other.kind === 'positions' ? [...other.positions.keys()] : other.kind, ['alerts'])
})

test('stream ids: 0, old plain numbers, bare positions on a multi-topic stream, and anything else', () => {
  assert.deepEqual(parseStreamId('0', ['a', 'b']), { kind: 'start' })
  assert.deepEqual(parseStreamId('17', ['a']), { kind: 'legacy' })
  assert.deepEqual(parseStreamId(' e1-7 ', ['a', 'b']), { kind: 'bare', position: { epoch: 'e1', seq: 7 } })
  for (const bad of ['', '-1', 'e1-', '-5', 'E1-5', 'e1-01', 'e1-1.5', '1.5', '0x10', 'abc', '01', 'e1-99999999999999999999', 'e1-2-3', 'abcd:e1-1,', 'abc:e1-1', 'abcd:e1-1;efgh:']) {
    assert.deepEqual(parseStreamId(bad, ['a', 'b']), { kind: 'malformed' }, bad)
  }
})

test('stream ids: the longest id the topic bound implies fits the bound, for any positions', () => {
  fc.assert(fc.property(fc.array(fc.string({ minLength: 1, maxLength: 20 }), { minLength: 1, maxLength: 64 }), (names) => {
    const topics = [...new Set(names)]
    const positions = topics.map(() => ({ epoch: 'z'.repeat(16), seq: Number.MAX_SAFE_INTEGER }))
    const id = encodeStreamId(topics.map(topicTag), positions)
    assert.ok(id.length <= maxStreamIdLength(topics.length), `${id.length} > ${maxStreamIdLength(topics.length)}`)
  }))
  assert.equal(maxStreamIdLength(1), 33)
  assert.equal(maxStreamIdLength(32), 32 * 38 + 31)
})

test('planTopic continues after the position, and to the head when the page held everything', () => {
  const plan = planTopic(resume(2), read(9, [event(3), event(5), event(9)]), 2_000, 0)
  assert.deepEqual(plan.events.map((e) => e.seq), [3, 5, 9])
  assert.deepEqual([plan.epoch, plan.after, plan.seq, plan.done, plan.reset], ['e1', 2, 9, true, undefined])
  const full = planTopic(resume(2), read(9, [event(3), event(4)], { full: true }), 2_000, 0)
  assert.deepEqual([full.seq, full.done], [4, false])
})

test('planTopic signals trimmed history, expired history and positions above the head', () => {
  const trimmed = planTopic(resume(2), read(9, [event(8), event(9)], { oldest: 8 }), 2_000, 0)
  assert.deepEqual([trimmed.reset, trimmed.events.map((e) => e.seq)], ['history-trimmed', [8, 9]])
  // Nothing retained at all (history size 0, or the stream evicted) while the head moved on.
  const none = planTopic(resume(2), read(9, []), 2_000, 0)
  assert.deepEqual([none.reset, none.seq], ['history-trimmed', 9])
  const expired = planTopic(resume(2), read(9, [event(3, 100), event(8, 5_000)], { oldest: 3 }), 6_000, 2_000)
  assert.deepEqual([expired.reset, expired.events.map((e) => e.seq)], ['history-expired', [8]])
  const future = planTopic(resume(50), read(9, []), 0, 0)
  assert.deepEqual([future.reset, future.seq], ['unknown-id', 9])
  const caughtUp = planTopic(resume(9), read(9, []), 0, 0)
  assert.deepEqual([caughtUp.reset, caughtUp.seq], [undefined, 9])
})

test('planTopic: a position of another epoch resets to the head; a live stream gets the new epoch from its start', () => {
  const history = read(3, [event(1, 1_000, 'e2'), event(2, 1_000, 'e2'), event(3, 1_000, 'e2')], { epoch: 'e2' })
  const resumed = planTopic(resume(40), history, 0, 0)
  assert.deepEqual([resumed.reset, resumed.epoch, resumed.seq, resumed.events.length], ['epoch-changed', 'e2', 3, 0])
  const live = planTopic({ ...resume(40), live: true }, history, 0, 0)
  assert.deepEqual([live.reset, live.epoch, live.seq, live.events.map((e) => e.seq)], ['epoch-changed', 'e2', 3, [1, 2, 3]])
  // A stream that saw no epoch yet (nothing was published) lost nothing when the first one is made.
  const first = planTopic({ epoch: '', seq: 0, live: true }, history, 0, 0)
  assert.deepEqual([first.reset, first.events.length], [undefined, 3])
  // From 0: whatever the current epoch is, no reset when nothing was trimmed.
  const fromStart = planTopic({ epoch: undefined, seq: 0, live: false }, history, 0, 0)
  assert.deepEqual([fromStart.reset, fromStart.events.length], [undefined, 3])
  // A topic that is gone altogether (expired, evicted, Redis restarted empty).
  const gone = planTopic(resume(5), read(0, [], { epoch: '' }), 0, 0)
  assert.deepEqual([gone.reset, gone.epoch, gone.seq], ['epoch-changed', '', 0])
})

test('TopicHistory keeps the newest events and says which is the oldest it holds', () => {
  const history = new TopicHistory(3)
  for (const seq of [1, 2, 3, 4, 5]) history.append(event(seq))
  assert.deepEqual(history.after(0).events.map((e) => e.seq), [3, 4, 5])
  assert.deepEqual(history.after(3).events.map((e) => e.seq), [4, 5])
  assert.equal(history.oldest, 3)
  const none = new TopicHistory(0)
  none.append(event(5))
  assert.deepEqual([none.after(0).events.length, none.oldest], [0, undefined])
})

test('TopicHistory pages stop at the count or the bytes, past a first event that always comes, and say when more remain', () => {
  const history = new TopicHistory(10)
  for (const seq of [1, 2, 3, 4]) history.append({ seq, epoch: 'e1', data: 'x'.repeat(100), time: 1 })
  const seqs = (page: { events: Array<{ seq: number }>, full: boolean }) => ({ seqs: page.events.map((e) => e.seq), full: page.full })
  assert.deepEqual(seqs(history.after(0, 2)), { seqs: [1, 2], full: true })
  assert.deepEqual(seqs(history.after(2, 2)), { seqs: [3, 4], full: false })
  assert.deepEqual(seqs(history.after(0, 10, 250)), { seqs: [1, 2], full: true })
  assert.deepEqual(seqs(history.after(0, 10, 10)), { seqs: [1], full: true }, 'one event even when it alone is over the bytes')
  assert.deepEqual(seqs(history.after(3, 10, 10)), { seqs: [4], full: false })
})
