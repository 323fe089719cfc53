import assert from 'node:assert/strict'
import { PassThrough } from 'node:stream'
import { test } from 'node:test'
import type { Position } from '../src/protocol.js'
import { Session, type CatchUpSource } from '../src/hub/session.js'
import { TopicEvent } from '../src/hub/topic-event.js'
import { SseParser } from '../src/sse/parser.js'
import type { StoredEvent, TopicRead } from '../src/transport/transport.js'

/** A history source whose reads the test answers one by one, in the order the session asks. */
class ScriptedSource implements CatchUpSource {
  readonly reads: Array<{ topic: string, after: Position, answer: (read: TopicRead) => void }> = []
  metrics = { replayStarted: () => {}, replayFinished: () => {} }

  async listening (): Promise<void> {}
  async heads (topics: readonly string[]): Promise<Position[]> {
    return topics.map(() => ({ epoch: 'e1', seq: 0 }))
  }

  async read (topic: string, after: Position): Promise<TopicRead> {
    return await new Promise((resolve) => this.reads.push({ topic, after, answer: resolve }))
  }

  resetFrame (): Buffer {
    return Buffer.from('event: herald.reset\ndata: {}\n\n')
  }

  failed (): void {}
  succeeded (): void {}
}

const stored = (seq: number): StoredEvent => ({ epoch: 'e1', seq, data: `{"n":${seq}}`, time: Date.now() })
const settle = async (): Promise<void> => await new Promise((resolve) => setImmediate(resolve))

test('a catch-up asked for while one runs keeps the topic held: live events in between are sent once, not again by the second catch-up', async () => {
  const source = new ScriptedSource()
  const session = new Session(['a'], { maxQueueBytes: 1 << 20, historyTtlMs: 0, source, onDestroy: () => {} })
  const sent: string[] = []
  const parser = new SseParser((event) => { if (event.id !== undefined) sent.push(event.id) })
  const socket = new PassThrough()
  socket.on('data', (chunk: Buffer) => parser.push(chunk.toString('utf8')))
  session.connect(socket, Buffer.from(':\n\n'))

  // The opening catch-up: nothing published yet.
  await settle()
  source.reads.shift()?.answer({ epoch: 'e1', head: 0, oldest: 1, events: [], full: false })
  await settle()
  session.deliver(new TopicEvent('a', stored(1)))

  // A resync (say the shard's subscriber came back), and a second one while the first still reads.
  session.resync(['a'])
  await settle()
  session.resync(['a'])
  source.reads.shift()?.answer({ epoch: 'e1', head: 1, oldest: 1, events: [], full: false })
  await settle()
  // Event 2 arrives while the second catch-up reads from position 1: it must wait for it, not move the position.
  session.deliver(new TopicEvent('a', stored(2)))
  const second = source.reads.shift()
  assert.deepEqual(second?.after, { epoch: 'e1', seq: 1 })
  second?.answer({ epoch: 'e1', head: 2, oldest: 1, events: [stored(2)], full: false })
  await settle()
  session.deliver(new TopicEvent('a', stored(3)))
  await settle()

  assert.deepEqual(sent, ['e1-1', 'e1-2', 'e1-3'])
  session.destroy()
})
