import assert from 'node:assert/strict'
import type { TestContext } from 'node:test'
import { until } from '../helper.js'
import type { HeraldProcess } from './herald-process.js'
import { publishLoop } from './publish-loop.js'
import { ResumingClient, tallyAll } from './resuming-client.js'

/** Something clients and publishers reach the instances through: a balancer process. */
export interface Front { kind: string, url: string }

/** Streams open on an instance, from its /health. */
export async function openStreams (instance: HeraldProcess): Promise<number> {
  return ((await (await fetch(`${instance.url}/health`)).json()) as { subscriptions: number }).subscriptions
}

/**
 * `count` clients stream through the balancer while events are published through it; instance A is killed
 * (SIGKILL) mid-way. Its clients must reconnect through the balancer with Last-Event-ID and, like the others,
 * end with every accepted event once, in order; publishes that start after the kill must all be accepted.
 */
export interface FailoverOptions {
  /** Headers of every publish (a token). */
  publisher?: Record<string, string>
  /** Publishes after the kill that may fail (Caddy's). */
  publishesCutAfterKill?: number
  /** Runs with every stream open and events flowing, just before the kill. */
  beforeKill?: () => Promise<void>
}

export async function failover (t: TestContext, balancer: Front, a: HeraldProcess, b: HeraldProcess, count: number, { publisher = {}, publishesCutAfterKill = 0, beforeKill }: FailoverOptions = {}) {
  const topic = `failover-${balancer.kind}`
  const clients = Array.from({ length: count }, () => new ResumingClient([balancer.url], `/v1/stream?topic=${topic}`))
  for (const client of clients) client.start()
  t.after(() => { for (const client of clients) client.stop() })
  await until(async () => await openStreams(a) + await openStreams(b) === count, 10_000, `${count} streams through ${balancer.kind}`)
  const onA = await openStreams(a)
  assert.ok(onA > 0 && onA < count, `streams spread over both instances (${onA} of ${count} on A)`)

  const loop = publishLoop(balancer.url, topic, { headers: publisher })
  await until(() => loop.accepted().length >= 50, 10_000, 'publishing')
  await beforeKill?.()
  const connectionsAtKill = clients.map((client) => client.connections)
  await a.kill('SIGKILL')
  const killedAt = Date.now()
  const reconnectMs: number[] = []
  const reconnected = new Set<number>()
  await until(() => {
    clients.forEach((client, index) => {
      if (!reconnected.has(index) && client.connections > (connectionsAtKill[index] ?? 0)) {
        reconnected.add(index)
        reconnectMs.push(Date.now() - killedAt)
      }
    })
    return reconnected.size >= onA && loop.results.filter((result) => result.startedAt > killedAt).length >= 100
  }, 20_000, `A's ${onA} clients to reconnect through ${balancer.kind}`)
  await loop.stop()

  const accepted = loop.accepted()
  const inFlight = loop.results.filter((result) => result.startedAt <= killedAt && result.status !== 202)
  const after = loop.results.filter((result) => result.startedAt > killedAt)
  await until(() => clients.every((client) => client.ids.length >= accepted.length), 10_000, 'clients to catch up')
  const { lost, duplicated, outOfOrder, unexpected } = tallyAll(clients, accepted)
  reconnectMs.sort((x, y) => x - y)
  const statuses: Record<string, number> = {}
  for (const result of loop.results) statuses[result.status] = (statuses[result.status] ?? 0) + 1
  const report = {
    clients: count,
    onA,
    reconnected: reconnected.size,
    reconnectMs: { median: reconnectMs[Math.floor(reconnectMs.length / 2)], max: reconnectMs.at(-1) },
    events: accepted.length,
    publishesAfterKill: after.length,
    statuses,
    refusals: [...new Set(loop.results.filter((result) => result.status !== 202).map((result) => `${result.status} ${JSON.stringify(result.body) ?? 'no body'}`))],
    lost,
    duplicated,
    outOfOrder,
    unexpected,
    onBAfter: await openStreams(b)
  }
  t.diagnostic(`${balancer.kind} failover: ${JSON.stringify(report)}`)
  assert.equal(reconnected.size, onA, 'exactly the clients of the killed instance reconnected')
  assert.ok(after.filter((result) => result.status !== 202).length <= publishesCutAfterKill, `at most ${publishesCutAfterKill} publish(es) after the kill fail`)
  assert.ok(inFlight.length <= 1, 'at most the publish in flight at the kill fails')
  assert.deepEqual({ lost, duplicated, outOfOrder }, { lost: 0, duplicated: 0, outOfOrder: 0 })
  // A publish cut by the kill may have been stored (its reply was lost): its event may reach the clients.
  assert.ok(unexpected <= (inFlight.length + publishesCutAfterKill) * count, 'only a publish cut by the kill may add an event')
  assert.equal(report.onBAfter, count, 'every stream is on B')
  return report
}
