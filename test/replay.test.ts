import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseEventId, planReplay, type ReplayStart } from '../src/hub/replay.js'
import type { HistoryRead } from '../src/transport/transport.js'
import { TopicHistory } from '../src/transport/topic-history.js'

const event = (id: number, time = 1_000) => ({ id, epoch: 'e1', data: String(id), time })
const resume = (after: number, epoch: string | null = 'e1'): ReplayStart => epoch === null
  ? { lastEventId: '0', epoch: undefined, after, live: false }
  : { lastEventId: `${epoch}-${after}`, epoch, after, live: false }
const read = (head: number, topics: HistoryRead['topics'], epoch = 'e1'): HistoryRead => ({ epoch, head, topics })

test('parseEventId accepts our ids, 0, and old plain numbers (another epoch), nothing else', () => {
  assert.deepEqual(parseEventId('m5x8k2qz3f-42'), { kind: 'position', epoch: 'm5x8k2qz3f', seq: 42 })
  assert.deepEqual(parseEventId(' e1-7 '), { kind: 'position', epoch: 'e1', seq: 7 })
  assert.deepEqual(parseEventId('0'), { kind: 'start' })
  assert.deepEqual(parseEventId('17'), { kind: 'legacy' })
  for (const bad of ['', '-1', 'e1-', '-5', 'E1-5', 'e1-01', 'e1-1.5', '1.5', '0x10', 'abc', '01', 'e1-99999999999999999999', 'e1-2-3']) {
    assert.equal(parseEventId(bad), undefined, bad)
  }
})

test('planReplay merges topics by id, once each, and continues from the last', () => {
  const plan = planReplay(resume(2), read(9, [
    { topic: 'a', events: [event(3), event(5), event(9)], trimmedThrough: 0, forgotten: false, full: false },
    { topic: 'b', events: [event(4), event(5)], trimmedThrough: 0, forgotten: false, full: false }
  ]), 2_000, 0)
  assert.deepEqual(plan.events.map((e) => e.id), [3, 4, 5, 9])
  assert.deepEqual([plan.epoch, plan.position], ['e1', 9])
  assert.equal(plan.reset, undefined)
  // Each event's topic (for envelopes): the first of the read's topics, in their order, that holds it.
  assert.deepEqual(plan.topics, ['a', 'b', 'a', 'a'])
  const reversed = planReplay(resume(2), read(9, [
    { topic: 'b', events: [event(4), event(5)], trimmedThrough: 0, forgotten: false, full: false },
    { topic: 'a', events: [event(3), event(5), event(9)], trimmedThrough: 0, forgotten: false, full: false }
  ]), 2_000, 0)
  assert.deepEqual(reversed.topics, ['a', 'b', 'b', 'a'])
})

test('planReplay signals trimmed history, expired history and unknown ids', () => {
  const trimmed = planReplay(resume(2), read(9, [{ topic: 'a', events: [event(8)], trimmedThrough: 6, forgotten: false, full: false }, { topic: 'b', events: [], trimmedThrough: 1, forgotten: false, full: false }]), 2_000, 0)
  assert.deepEqual(trimmed.reset, { reason: 'history-trimmed', topics: ['a'], lastEventId: 'e1-2' })
  assert.deepEqual(trimmed.events.map((e) => e.id), [8])

  const expired = planReplay(resume(2), read(9, [{ topic: 'a', events: [event(3, 100), event(8, 5_000)], trimmedThrough: 0, forgotten: false, full: false }]), 6_000, 2_000)
  assert.deepEqual(expired.reset, { reason: 'history-expired', topics: ['a'], lastEventId: 'e1-2' })
  assert.deepEqual(expired.events.map((e) => e.id), [8])

  const forgotten = planReplay(resume(2), read(9, [{ topic: 'a', events: [event(8)], trimmedThrough: 0, forgotten: true, full: false }]), 2_000, 0)
  assert.deepEqual(forgotten.reset, { reason: 'history-expired', topics: ['a'], lastEventId: 'e1-2' })
  assert.deepEqual(forgotten.events.map((e) => e.id), [8])

  const future = planReplay(resume(50), read(9, [{ topic: 'a', events: [], trimmedThrough: 0, forgotten: false, full: false }]), 0, 0)
  assert.deepEqual([future.reset?.reason, future.position], ['unknown-id', 9])
})

test('planReplay: an id of another epoch resets to the head; a live stream gets the new epoch from its start', () => {
  const history = read(3, [{ topic: 'a', events: [event(1), event(2), event(3)].map((e) => ({ ...e, epoch: 'e2' })), trimmedThrough: 0, forgotten: false, full: false }], 'e2')
  const resumed = planReplay(resume(40), history, 0, 0)
  assert.deepEqual([resumed.reset?.reason, resumed.epoch, resumed.position, resumed.events.length], ['epoch-changed', 'e2', 3, 0])

  const live = planReplay({ ...resume(40), live: true }, history, 0, 0)
  assert.deepEqual([live.reset?.reason, live.epoch, live.position], ['epoch-changed', 'e2', 3])
  assert.deepEqual(live.events.map((e) => e.id), [1, 2, 3])

  // A stream that saw no epoch yet (nothing was published) lost nothing when the first one is made.
  const first = planReplay({ lastEventId: '-0', epoch: '', after: 0, live: true }, history, 0, 0)
  assert.deepEqual([first.reset, first.events.length], [undefined, 3])

  // From 0: whatever the current epoch is, no reset when nothing was trimmed.
  const fromStart = planReplay(resume(0, null), history, 0, 0)
  assert.deepEqual([fromStart.reset, fromStart.events.length], [undefined, 3])
})

test('TopicHistory keeps the newest events and remembers what it dropped', () => {
  const history = new TopicHistory(3)
  for (const id of [2, 4, 6, 8, 10]) history.append(event(id))
  assert.deepEqual(history.after(0).events.map((e) => e.id), [6, 8, 10])
  assert.deepEqual(history.after(6).events.map((e) => e.id), [8, 10])
  assert.equal(history.trimmedThrough, 4)
  const none = new TopicHistory(0)
  none.append(event(5))
  assert.deepEqual([none.after(0).events.length, none.trimmedThrough], [0, 5])
})

test('TopicHistory pages stop at the count or the bytes, past a first event that always comes, and say when more remain', () => {
  const history = new TopicHistory(10)
  for (const id of [1, 2, 3, 4]) history.append({ id, epoch: 'e1', data: 'x'.repeat(100), time: 1 })
  const ids = (page: { events: Array<{ id: number }>, full: boolean }) => ({ ids: page.events.map((e) => e.id), full: page.full })
  assert.deepEqual(ids(history.after(0, 2)), { ids: [1, 2], full: true })
  assert.deepEqual(ids(history.after(2, 2)), { ids: [3, 4], full: false })
  assert.deepEqual(ids(history.after(0, 10, 250)), { ids: [1, 2], full: true })
  assert.deepEqual(ids(history.after(0, 10, 10)), { ids: [1], full: true }, 'one event even when it alone is over the bytes')
  assert.deepEqual(ids(history.after(3, 10, 10)), { ids: [4], full: false })
})
