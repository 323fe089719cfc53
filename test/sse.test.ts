import assert from 'node:assert/strict'
import { test } from 'node:test'
import { getLines, getMessages, type EventSourceMessage } from '@microsoft/fetch-event-source/lib/cjs/parse.js'
import fc from 'fast-check'
import { encodeComment, encodeFrame, encodeOpening, encodeRetry, isSingleLine } from '../src/sse/encode.js'
import { SseParser, type ParsedEvent } from '../src/sse/parser.js'

function parse (text: string, chunkSize = text.length): { events: ParsedEvent[], comments: number } {
  const events: ParsedEvent[] = []
  const parser = new SseParser((event) => events.push(event))
  for (let index = 0; index < text.length; index += chunkSize) parser.push(text.slice(index, index + chunkSize))
  return { events, comments: parser.comments }
}

test('encodeFrame writes id, event, retry and data lines, ending with a blank line', () => {
  assert.equal(encodeFrame({ id: 7, event: 'tick', retry: 1000, data: '{"a":1}' }), 'id: 7\nevent: tick\nretry: 1000\ndata: {"a":1}\n\n')
  assert.equal(encodeFrame({ data: '' }), 'data: \n\n')
})

test('encodeFrame splits data on LF, CR and CRLF into data lines', () => {
  assert.equal(encodeFrame({ data: 'a\nb\rc\r\nd' }), 'data: a\ndata: b\ndata: c\ndata: d\n\n')
  assert.equal(encodeFrame({ data: '\n' }), 'data: \ndata: \n\n')
})

test('encodeFrame refuses line breaks and NUL in id and event', () => {
  for (const bad of ['a\nb', 'a\rb', 'a\u0000b']) {
    assert.throws(() => encodeFrame({ event: bad, data: 'x' }), /event must not contain/)
    assert.throws(() => encodeFrame({ id: bad, data: 'x' }), /id must not contain/)
    assert.equal(isSingleLine(bad), false)
  }
  assert.equal(isSingleLine('fine: yes'), true)
})

test('comments, retry and the opening are lines without a blank line', () => {
  assert.equal(encodeComment(), ':\n')
  assert.equal(encodeComment('hi\nthere'), ': hi\n: there\n')
  assert.equal(encodeRetry(1500.7), 'retry: 1500\n')
  assert.equal(encodeOpening(3000), ': herald\nretry: 3000\n')
})

test('the opening and heartbeats dispatch nothing; the event after them is whole and the retry applies', () => {
  const text = encodeOpening(3000) + encodeComment() + encodeComment() + encodeFrame({ id: 1, data: 'x' }) + encodeComment()
  for (const size of [1, 5, text.length]) {
    const { events, comments } = parse(text, size)
    assert.deepEqual(events, [{ id: '1', event: 'message', data: 'x', retry: 3000 }], `chunk ${size}`)
    assert.equal(comments, 4)
  }
})

test('whatever the data, a spec parser sees one event with exactly that data', () => {
  const hostile = ['plain', 'x\n\nevent: evil\ndata: y', 'id: 99', '\r\r\r', 'a\r\n\r\nb', ': comment\ndata: z', 'tail\r']
  for (const data of hostile) {
    const { events } = parse(encodeFrame({ id: 1, event: 'safe', data }))
    assert.equal(events.length, 1, JSON.stringify(data))
    assert.deepEqual(events[0], { id: '1', event: 'safe', data: data.replace(/\r\n|\r/g, '\n') })
  }
})

test('the parser handles chunks split anywhere, CRLF split across chunks included', () => {
  const text = 'retry: 10\r\n\r\n: hb\r\n\r\nid: 1\r\nevent: x\r\ndata: a\r\ndata: b\r\n\r\nid: 2\rdata: c\r\r\n'
  for (const size of [1, 2, 3, 7, text.length]) {
    const { events, comments } = parse(text, size)
    assert.deepEqual(events, [{ id: '1', event: 'x', data: 'a\nb', retry: 10 }, { id: '2', event: 'message', data: 'c', retry: 10 }], `chunk ${size}`)
    assert.equal(comments, 1)
  }
})

/** What @microsoft/fetch-event-source reports for a stream's bytes: its own parser (pure, it runs in Node). */
function fetchEventSourceMessages (text: string, chunkSize: number): { messages: EventSourceMessage[], retries: number[] } {
  const messages: EventSourceMessage[] = []
  const retries: number[] = []
  const onChunk = getLines(getMessages(() => {}, (retry) => retries.push(retry), (message) => messages.push(message)))
  const bytes = Buffer.from(text)
  for (let index = 0; index < bytes.length; index += chunkSize) onChunk(bytes.subarray(index, index + chunkSize))
  return { messages, retries }
}

test('@microsoft/fetch-event-source reports no message for the opening and heartbeats, and each event once', () => {
  const opening = encodeOpening(3000)
  const heartbeats = encodeComment().repeat(3)
  const text = opening + heartbeats + encodeFrame({ id: 1, data: '{"a":1}' }) + heartbeats + encodeFrame({ id: 2, event: 'tick', data: '2' }) + heartbeats
  for (const size of [1, 7, text.length]) {
    const { messages, retries } = fetchEventSourceMessages(text, size)
    assert.deepEqual(messages.map(({ id, event, data }) => ({ id, event, data })), [{ id: '1', event: '', data: '{"a":1}' }, { id: '2', event: 'tick', data: '2' }], `chunk ${size}`)
    assert.deepEqual(retries, [3000], 'the reconnection delay is taken at once')
  }
  // Why there is no blank line after a comment: this library turns every blank line into a message.
  assert.deepEqual(fetchEventSourceMessages(': herald\n\n:\n\n', 1).messages.map((message) => message.data), ['', ''])
})

/** Text rich in CR, LF and CRLF (and runs of them), around arbitrary NUL-free text. */
const lineBreakText = fc.array(fc.oneof(
  fc.constantFrom('\r', '\n', '\r\n', '\r\r', '\n\r', '\r\n\r\n', 'data: x', 'event: evil', 'id: 9', 'retry: 1', ': c'),
  fc.string({ unit: 'binary', maxLength: 6 })
), { maxLength: 12 }).map((parts) => parts.join('').replaceAll('\u0000', ''))

/** What a client must see for a data value: line breaks of any kind become LF. */
const asParsed = (data: string) => data.replace(/\r\n|\r/g, '\n')

test('property: any data with CR, LF and CRLF encodes to one event with exactly that data, however the bytes are chunked', () => {
  const frame = fc.record({
    id: fc.nat(),
    event: fc.string({ minLength: 1, maxLength: 10 }).filter(isSingleLine),
    data: lineBreakText
  })
  fc.assert(fc.property(frame, fc.integer({ min: 1, max: 40 }), ({ id, event, data }, chunkSize) => {
    const encoded = encodeFrame({ id, event, data })
    assert.ok(!encoded.includes('\r'), 'no CR on the wire: every line break in data became a data line')
    assert.equal(encoded.indexOf('\n\n'), encoded.length - 2, 'the only blank line ends the frame')
    const { events } = parse(encoded, chunkSize)
    assert.deepEqual(events, [{ id: String(id), event, data: asParsed(data) }])
  }), { numRuns: 1_000 })
})

test('property: frames back to back stay separate events, in order; comments add none', () => {
  const items = fc.array(fc.oneof(
    lineBreakText.map((data) => ({ kind: 'event' as const, data })),
    lineBreakText.map((text) => ({ kind: 'comment' as const, text }))
  ), { maxLength: 8 })
  fc.assert(fc.property(items, fc.integer({ min: 1, max: 40 }), (list, chunkSize) => {
    let text = ''
    const expected: ParsedEvent[] = []
    let lines = 0
    for (const [index, item] of list.entries()) {
      if (item.kind === 'event') {
        text += encodeFrame({ id: index, data: item.data })
        expected.push({ id: String(index), event: 'message', data: asParsed(item.data) })
      } else {
        text += encodeComment(item.text)
        lines += item.text.split(/\r\n|\r|\n/).length
      }
    }
    const parsed = parse(text, chunkSize)
    assert.deepEqual(parsed.events, expected)
    assert.equal(parsed.comments, lines)
  }), { numRuns: 500 })
})
