// The bench's own parsers, fed byte by byte and in one piece: node --import tsx --test bench/sse-client.test.ts
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ChunkedDecoder, type SseEvent, SseParser, tallySequence } from './sse-client.js'

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
