import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createPublishQuota } from '../src/publish-quota.js'

test('a take costs its weight; a take that does not fit takes nothing and says when the window ends', () => {
  const quota = createPublishQuota(100, 60_000)
  assert.deepEqual(quota.take('a', 64, 1_000), { allowed: true, remaining: 36 })
  assert.deepEqual(quota.take('a', 40, 1_500), { allowed: false, remaining: 36, retryAfterMs: 59_500 })
  assert.deepEqual(quota.take('a', 36, 2_000), { allowed: true, remaining: 0 })
  assert.deepEqual(quota.take('b', 1, 2_000), { allowed: true, remaining: 99 }, 'each key has its own budget')
  assert.equal(quota.take('a', 1, 60_999).allowed, false)
  assert.deepEqual(quota.take('a', 1, 61_000), { allowed: true, remaining: 99 }, 'a new window starts at the end of the last')
})

test('a weight above the limit never fits; 0 is no limit', () => {
  const quota = createPublishQuota(10, 60_000)
  assert.equal(quota.take('a', 11, 0).allowed, false)
  assert.equal(quota.take('a', 10, 0).allowed, true)
  assert.deepEqual(createPublishQuota(0, 60_000).take('a', 1_000_000, 0), { allowed: true, remaining: Infinity })
})

test('past maxKeys the oldest windows are forgotten first', () => {
  const quota = createPublishQuota(1, 60_000, 2)
  assert.equal(quota.take('a', 1, 0).allowed, true)
  assert.equal(quota.take('b', 1, 1).allowed, true)
  assert.equal(quota.take('c', 1, 2).allowed, true)
  assert.equal(quota.take('c', 1, 3).allowed, false)
  assert.equal(quota.take('b', 1, 3).allowed, false, 'b is still counted')
  assert.equal(quota.take('a', 1, 3).allowed, true, 'a was forgotten')
})
