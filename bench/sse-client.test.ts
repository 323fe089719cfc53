// The bench's own parsers, fed byte by byte and in one piece: node --import tsx --test bench/sse-client.test.ts
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ChunkedDecoder, IdLineCounter, type SseEvent, SseParser, tallySequence } from './sse-client.js'

const stream = 'retry: 2000\n:\n\nid: 1\ndata: {"seq":0,"t":1.5}\n\n: heartbeat\n\nid: 2\nevent: msg\r\ndata: a\ndata:b\n\ndata\n\nid: 3\n\n'
const expected: SseEvent[] = [
  { id: '1', data: '{"seq":0,"t":1.5}' },
  { id: '2', event: 'msg', data: 'a\nb' },
  { data: '' }
]

function chunked (text: string, size: number): string {
  let out = ''
  for (let at = 0; at < text.length; at += size) {
    const part = text.slice(at, at + size)
    out += `${part.length.toString(16)}\r\n${part}\r\n`
  }
  return out + '0\r\n\r\n'
}

function splits (text: string): string[][] {
  return [[text], text.split(''), [text.slice(0, 7), text.slice(7, 40), text.slice(40)]]
}

test('SseParser finds the same events however the text is split', () => {
  for (const parts of splits(stream)) {
    const events: SseEvent[] = []
    const parser = new SseParser((event) => events.push(event))
    for (const part of parts) parser.push(part)
    assert.deepEqual(events, expected)
  }
})

test('ChunkedDecoder restores the body however the chunks and reads are split', () => {
  for (const size of [1, 5, 1000]) {
    for (const parts of splits(chunked(stream, size))) {
      const decoder = new ChunkedDecoder()
      let body = ''
      for (const part of parts) body += decoder.push(part)
      assert.equal(body, stream)
      assert.equal(decoder.done, true)
    }
  }
})

test('tallySequence counts lost, duplicated and out-of-order deliveries', () => {
  assert.deepEqual(tallySequence([0, 1, 2], [0, 1, 2]), { lost: 0, duplicated: 0, outOfOrder: 0 })
  assert.deepEqual(tallySequence([0, 2, 1, 2], [0, 1, 2, 3]), { lost: 1, duplicated: 1, outOfOrder: 1 })
})

test('IdLineCounter counts event frames (not reset notices) however the bytes are split', () => {
  const herald = 'retry: 2000\n\n: herald\n\nevent: herald.reset\ndata: {"reason":"epoch-changed"}\n\nid: e1-1\ndata: "id: x"\n\n:\n\nid: e1-2\nevent: m\ndata: a\ndata: b\n\nid: e1-3\ndata: 3\n\n'
  const bytes = Buffer.from(herald)
  for (const parts of [...splits(herald), [herald.slice(0, 33), herald.slice(33, 35), herald.slice(35)]]) {
    const counter = new IdLineCounter()
    let frames = 0
    for (const part of parts) frames += counter.push(Buffer.from(part))
    assert.equal(frames, 3, `${parts.length} parts`)
  }
  // Every split point, in two reads.
  for (let at = 0; at <= bytes.length; at++) {
    const counter = new IdLineCounter()
    assert.equal(counter.push(bytes.subarray(0, at)) + counter.push(bytes.subarray(at)), 3, `split at ${at}`)
  }
})
