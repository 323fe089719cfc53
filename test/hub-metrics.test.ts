// What the hub tells its HubMetrics of replays, on the memory transport: the kind, how each ends, and each read's
// wait for a slot. The metrics plugin turns these into herald_replays_* (test/metrics.test.ts scrapes them).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { HubMetrics } from '../src/hub/hub-metrics.js'
import { Hub } from '../src/hub/hub.js'
import { MemoryTransport } from '../src/transport/memory.js'
import { until } from './helper.js'

function recordingHub (onStarted: () => void = () => {}): { hub: Hub, told: string[], waits: number[] } {
  const told: string[] = []
  const waits: number[] = []
  const metrics: HubMetrics = {
    replayStarted: (kind) => {
      told.push(`started ${kind}`)
      // Told as the stream opens, before subscribe() returns it.
      queueMicrotask(onStarted)
    },
    replayFinished: (kind, result, seconds) => {
      assert.ok(seconds >= 0)
      told.push(`finished ${kind} ${result}`)
    },
    replaySlotWaited: (seconds) => waits.push(seconds)
  }
  const transport = new MemoryTransport({ historySize: 1_000, historyRetentionMs: 60_000, idempotencyTtlMs: 60_000 })
  // A small queue cap: a replay of 200-byte events takes many pages.
  const hub = new Hub(transport, { maxQueueBytes: 4_096, historyTtlMs: 0, heartbeatMs: 60_000, metrics })
  return { hub, told, waits }
}

test('a resume that reads to the end is done; one whose client leaves as it starts is client-left', async (t) => {
  let leaving: ReturnType<Hub['subscribe']> | undefined
  // The first replay's client leaves as it starts (a stream with a reader drains too fast to catch mid-way).
  const { hub, told, waits } = recordingHub(() => {
    leaving?.destroy()
    leaving = undefined
  })
  t.after(async () => await hub.close(0))
  const ids: string[] = []
  for (let index = 0; index < 200; index++) ids.push((await hub.publish({ topics: ['t'], data: JSON.stringify('x'.repeat(200)) })).ids[0] as string)

  leaving = hub.subscribe(['t'], ids[0])
  await until(() => told.includes('finished resume client-left'), 5_000, 'the replay to end')

  const reading = hub.subscribe(['t'], ids[0])
  let bytes = 0
  reading.on('data', (chunk: Buffer) => { bytes += chunk.length })
  await until(() => told.includes('finished resume done'), 10_000, 'the replay to finish')
  assert.ok(bytes > 199 * 200, `${bytes} bytes replayed`)
  reading.destroy()

  const fresh = hub.subscribe(['t'])
  fresh.resume()
  await until(() => told.includes('finished new done'), 5_000, 'the new stream\'s read')
  fresh.destroy()
  assert.deepEqual(told, ['started resume', 'finished resume client-left', 'started resume', 'finished resume done', 'started new', 'finished new done'])
  // The resume that was read had several pages (4 KiB each under this queue cap), each a read in a slot.
  assert.ok(waits.length >= 3 && waits.every((seconds) => seconds >= 0), `${waits.length} reads, each with its wait`)
})

test('a malformed id gets a reset, then a resume from the head: one read, nothing replayed from before', async (t) => {
  const { hub, told, waits } = recordingHub()
  t.after(async () => await hub.close(0))
  await hub.publish({ topics: ['t'], data: '1' })
  const stream = hub.subscribe(['t'], 'not-an-id')
  let text = ''
  stream.on('data', (chunk: Buffer) => { text += chunk.toString() })
  await until(() => text.includes('herald.reset') && told.length === 2, 5_000, 'the reset')
  stream.destroy()
  assert.deepEqual(told, ['started resume', 'finished resume done'])
  assert.equal(waits.length, 1, 'one read: what came between the head and the subscription')
  assert.ok(!text.includes('data: 1'), 'nothing from before the head')
})
