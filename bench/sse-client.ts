import { connect, type Socket } from 'node:net'

/** Wall-clock milliseconds with sub-millisecond precision, shared by publisher and receivers in this process. */
export const now = (): number => performance.timeOrigin + performance.now()

/**
 * Incremental HTTP/1.1 chunked-transfer decoder over latin1 text (one char per byte, so chunk sizes count
 * chars). Chunk extensions are ignored; trailers are not expected. `done` turns true at the last chunk.
 */
export class ChunkedDecoder {
  done = false
  private pending = ''
  private left = 0

  push (input: string): string {
    const text = this.pending.length === 0 ? input : this.pending + input
    let at = 0
    let out = ''
    while (at < text.length && !this.done) {
      if (this.left > 0) {
        const take = Math.min(this.left, text.length - at)
        out += take === text.length ? text : text.slice(at, at + take)
        at += take
        this.left -= take
        continue
      }
      const eol = text.indexOf('\r\n', at)
      if (eol === -1) break
      const sizeText = text.slice(at, eol)
      at = eol + 2
      // The CRLF that ends each chunk's data reads as an empty size line.
      if (sizeText === '') continue
      const size = parseInt(sizeText, 16)
      if (Number.isNaN(size)) throw new Error(`bad chunk size ${JSON.stringify(sizeText.slice(0, 20))}`)
      if (size === 0) this.done = true
      else this.left = size
    }
    this.pending = at === 0 ? text : text.slice(at)
    return out
  }
}

export interface SseEvent {
  data: string
  event?: string
  id?: string
}

/**
 * Incremental text/event-stream parser: lines end in `\n` or `\r\n` (a lone `\r` is not treated as a line
 * end; none of the servers measured sends one). Comments (`:` lines) and `retry:` are skipped; several
 * `data:` lines join with `\n`; an event is dispatched at a blank line if it had any data.
 */
export class SseParser {
  private buffer = ''
  private data: string | undefined
  private event: string | undefined
  private id: string | undefined

  constructor (private readonly onEvent: (event: SseEvent) => void) {}

  push (text: string): void {
    const buffer = this.buffer.length === 0 ? text : this.buffer + text
    let start = 0
    let end: number
    while ((end = buffer.indexOf('\n', start)) !== -1) {
      const stop = end > start && buffer.charCodeAt(end - 1) === 13 ? end - 1 : end
      this.line(buffer, start, stop)
      start = end + 1
    }
    this.buffer = start === 0 ? buffer : buffer.slice(start)
  }

  private line (text: string, start: number, stop: number): void {
    if (start === stop) {
      if (this.data !== undefined) {
        const event: SseEvent = { data: this.data }
        if (this.event !== undefined) event.event = this.event
        if (this.id !== undefined) event.id = this.id
        this.onEvent(event)
      }
      this.data = this.event = this.id = undefined
      return
    }
    if (text.charCodeAt(start) === 58) return
    const colon = text.indexOf(':', start)
    const nameEnd = colon === -1 || colon > stop ? stop : colon
    let valueStart = nameEnd === stop ? stop : nameEnd + 1
    if (text.charCodeAt(valueStart) === 32 && valueStart < stop) valueStart++
    const name = text.slice(start, nameEnd)
    const value = text.slice(valueStart, stop)
    if (name === 'data') this.data = this.data === undefined ? value : `${this.data}\n${value}`
    else if (name === 'event') this.event = value
    else if (name === 'id') this.id = value
  }
}

/** One read buffer for every load client: each read is parsed to text before the next one can land. */
const readBuffer = Buffer.allocUnsafe(256 * 1024)

/**
 * A raw socket that sends `GET path` for an event stream. `onread` with one shared buffer: each read goes straight
 * to `onRead(length)` (the bytes are in `readBuffer`), without a Buffer per read and the Readable machinery, which
 * is most of the generator's cost per delivery.
 */
function openRawStream (port: number, path: string, onRead: (length: number) => void, localAddress?: string): Socket {
  const socket = connect({
    port,
    host: '127.0.0.1',
    noDelay: true,
    ...(localAddress === undefined ? {} : { localAddress }),
    onread: { buffer: readBuffer, callback: (length) => { onRead(length); return true } }
  })
  socket.on('connect', () => socket.write(streamRequest(path)))
  return socket
}

/** The GET of an event stream (a loopback Host: open development mode refuses others). */
function streamRequest (path: string): string {
  return `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`
}

/**
 * A client that asks for a stream and never reads a byte: its kernel receive buffer fills and stays full (Node
 * cannot shrink it; it does not grow without reads). From `localAddress` when given (any of 127/8 on loopback).
 */
export function neverReadingStream (port: number, path: string, localAddress?: string): Socket {
  const socket = connect({ port, host: '127.0.0.1', ...(localAddress === undefined ? {} : { localAddress }) })
  socket.pause()
  socket.on('error', () => {})
  socket.on('connect', () => socket.write(streamRequest(path)))
  return socket
}

/** Where a load client reports: each benchmark event's seq and its latency. */
export interface Sink {
  latencies: number[] | undefined
}

/**
 * A bare SSE client for load: a raw socket, a hand-written GET, HTTP chunked decoding and `SseParser`.
 * Each measured event's data is `{"seq":n,"t":ms}`; receive time minus `t` is the latency. Events with a
 * negative seq are warm-ups: they prove the subscription is live and are not counted.
 * Much cheaper per connection than http.Agent or an EventSource polyfill, so 10k fit in one process.
 */
export class SseLoadClient {
  readonly seqs: number[] = []
  /** Response headers received (status in `status`), i.e. the server accepted the stream. */
  connected = false
  warm = false
  closed = false
  status = 0
  private readonly socket: Socket
  private head = ''
  private chunks: ChunkedDecoder | undefined
  private readonly parser: SseParser

  constructor (port: number, path: string, private readonly sink: Sink | undefined) {
    this.parser = new SseParser((event) => this.onEvent(event))
    this.socket = openRawStream(port, path, (length) => this.onData(readBuffer.toString('latin1', 0, length)))
    this.socket.on('close', () => { this.closed = true })
    this.socket.on('error', () => { this.closed = true })
  }

  get settled (): boolean {
    return this.connected || this.closed
  }

  close (): void {
    this.socket.destroy()
  }

  private onData (chunk: string): void {
    if (!this.connected) {
      this.head += chunk
      const end = this.head.indexOf('\r\n\r\n')
      if (end === -1) return
      const head = this.head.slice(0, end)
      this.status = Number(head.slice(9, 12))
      if (this.status !== 200) {
        this.socket.destroy()
        return
      }
      this.connected = true
      if (/\r\ntransfer-encoding:[ \t]*chunked/i.test(head)) this.chunks = new ChunkedDecoder()
      chunk = this.head.slice(end + 4)
      this.head = ''
    }
    this.parser.push(this.chunks === undefined ? chunk : this.chunks.push(chunk))
  }

  private onEvent (event: SseEvent): void {
    if (this.sink === undefined) return
    const { seq, t } = JSON.parse(event.data) as { seq: number, t: number }
    if (seq < 0) {
      this.warm = true
      return
    }
    this.seqs.push(seq)
    this.sink.latencies?.push(now() - t)
  }
}

/** How a frame's id line starts: Herald writes `id:` first in every event frame (not in reset notices). */
const ID_LINE = Buffer.from('\nid: ')

/** Counts event frames in raw stream bytes by their `id:` lines, however the bytes are split between reads. */
export class IdLineCounter {
  /** The last bytes of the previous read: an id line may be split between two reads. */
  private edge = Buffer.alloc(0)

  /** The id lines that end in `bytes` (which may be overwritten after the call). */
  push (bytes: Buffer): number {
    let found = 0
    const keep = ID_LINE.length - 1
    if (this.edge.length > 0) {
      const joined = Buffer.concat([this.edge, bytes.subarray(0, keep)])
      const at = joined.indexOf(ID_LINE)
      if (at !== -1 && at < this.edge.length) found++
    }
    for (let at = bytes.indexOf(ID_LINE); at !== -1; at = bytes.indexOf(ID_LINE, at + ID_LINE.length)) found++
    const tail = bytes.length >= keep ? bytes.subarray(bytes.length - keep) : Buffer.concat([this.edge, bytes])
    this.edge = Buffer.from(tail.subarray(Math.max(0, tail.length - keep)))
    return found
  }
}

/**
 * A stream client that only counts events, for big ones or very many: it finds each frame's `id:` line in the
 * raw bytes (no text decoding, no parsing), so one process can take gigabytes of replay. Herald's event streams
 * are not chunked (the body runs to the connection's end), so the bytes after the head are the stream itself.
 */
export class SseFrameCounter {
  frames = 0
  bytes = 0
  status = 0
  closed = false
  /** When the last frame arrived (`now()`). */
  lastFrameAt = 0
  private head = ''
  private readonly counter = new IdLineCounter()
  private readonly socket: Socket

  constructor (port: number, path: string, localAddress?: string) {
    this.socket = openRawStream(port, path, (length) => this.onRead(length), localAddress)
    this.socket.on('close', () => { this.closed = true })
    this.socket.on('error', () => { this.closed = true })
  }

  close (): void {
    this.socket.destroy()
  }

  private onRead (length: number): void {
    let start = 0
    if (this.status === 0) {
      this.head += readBuffer.toString('latin1', 0, length)
      const end = this.head.indexOf('\r\n\r\n')
      if (end === -1) return
      this.status = Number(this.head.slice(9, 12))
      start = length - (this.head.length - end - 4)
      this.head = ''
    }
    this.bytes += length - start
    const found = this.counter.push(readBuffer.subarray(start, length))
    if (found > 0) {
      this.frames += found
      this.lastFrameAt = now()
    }
  }
}

/** Lost, duplicated and out-of-order counts of one client's sequence against what it should have seen. */
export function tallySequence (seqs: number[], expected: number[]): { lost: number, duplicated: number, outOfOrder: number } {
  const seen = new Set<number>()
  let duplicated = 0
  let outOfOrder = 0
  let previous = -Infinity
  for (const seq of seqs) {
    if (seen.has(seq)) duplicated++
    else if (seq < previous) outOfOrder++
    seen.add(seq)
    previous = Math.max(previous, seq)
  }
  let lost = 0
  for (const seq of expected) if (!seen.has(seq)) lost++
  return { lost, duplicated, outOfOrder }
}
