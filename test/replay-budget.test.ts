// The per-instance budget of history reads, alone: slots, the hand-over to the next reader, and the waits it reports.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ReplayBudget } from '../src/hub/replay-budget.js'

test('a read that finds a free slot reports no wait; one queued behind a full budget reports its wait', async () => {
  const waits: number[] = []
  const budget = new ReplayBudget(1, (seconds) => waits.push(seconds))
  let finishFirst = (): void => {}
  const first = budget.run(async () => await new Promise<string>((resolve) => { finishFirst = () => resolve('first') }))
  const second = budget.run(async () => 'second')
  assert.deepEqual(budget.load, { running: 1, waiting: 1 })
  assert.deepEqual(waits, [0])
  await new Promise((resolve) => setTimeout(resolve, 20))
  finishFirst()
  assert.deepEqual(await Promise.all([first, second]), ['first', 'second'])
  assert.equal(waits.length, 2)
  assert.ok((waits[1] ?? 0) > 0, `the queued read waited ${String(waits[1])} s`)
  assert.deepEqual(budget.load, { running: 0, waiting: 0 })
})
