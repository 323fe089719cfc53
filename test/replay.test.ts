import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseEventId, planReplay } from '../src/hub/replay.js'
import type { HistoryRead } from '../src/transport/transport.js'
import { TopicHistory } from '../src/transport/topic-history.js'

const event = (id: number, time = 1_000) => ({ id, data: String(id), time })

test('parseEventId accepts only our decimal ids', () => {
  assert.equal(parseEventId('42'), 42)
  assert.equal(parseEventId(' 7 '), 7)
  for (const bad of ['', '-1', '1.5', '0x10', 'abc', '01', '99999999999999999999']) assert.equal(parseEventId(bad), undefined, bad)
})

test('planReplay merges topics by id, once each, and continues from the last', () => {
  const read: HistoryRead = {
    head: 9,
    topics: [
      { topic: 'a', events: [event(3), event(5), event(9)], trimmedThrough: 0 },
      { topic: 'b', events: [event(4), event(5)], trimmedThrough: 0 }
    ]
  }
  const plan = planReplay('2', read, 2_000, 0)
  assert.deepEqual(plan.events.map((e) => e.id), [3, 4, 5, 9])
  assert.equal(plan.position, 9)
  assert.equal(plan.reset, undefined)
})

test('planReplay signals trimmed history, expired history, malformed and unknown ids', () => {
  const trimmed = planReplay('2', { head: 9, topics: [{ topic: 'a', events: [event(8)], trimmedThrough: 6 }, { topic: 'b', events: [], trimmedThrough: 1 }] }, 2_000, 0)
  assert.deepEqual(trimmed.reset, { reason: 'history-trimmed', topics: ['a'], lastEventId: '2' })
  assert.deepEqual(trimmed.events.map((e) => e.id), [8])

  const expired = planReplay('2', { head: 9, topics: [{ topic: 'a', events: [event(3, 100), event(8, 5_000)], trimmedThrough: 0 }] }, 6_000, 2_000)
  assert.deepEqual(expired.reset, { reason: 'history-expired', topics: ['a'], lastEventId: '2' })
  assert.deepEqual(expired.events.map((e) => e.id), [8])

  const malformed = planReplay('abc', { head: 9, topics: [{ topic: 'a', events: [], trimmedThrough: 0 }] }, 0, 0)
  assert.deepEqual([malformed.reset?.reason, malformed.position, malformed.events.length], ['malformed-id', 9, 0])

  const future = planReplay('50', { head: 9, topics: [{ topic: 'a', events: [], trimmedThrough: 0 }] }, 0, 0)
  assert.deepEqual([future.reset?.reason, future.position], ['unknown-id', 9])
})

test('TopicHistory keeps the newest events and remembers what it dropped', () => {
  const history = new TopicHistory(3)
  for (const id of [2, 4, 6, 8, 10]) history.append(event(id))
  assert.deepEqual(history.after(0).map((e) => e.id), [6, 8, 10])
  assert.deepEqual(history.after(6).map((e) => e.id), [8, 10])
  assert.equal(history.trimmedThrough, 4)
  const none = new TopicHistory(0)
  none.append(event(5))
  assert.deepEqual([none.after(0).length, none.trimmedThrough], [0, 5])
})
