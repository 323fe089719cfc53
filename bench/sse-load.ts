import { connect, type Socket } from 'node:net'

/** Wall-clock milliseconds with sub-millisecond precision, shared by publisher and receivers in this process. */
export const now = (): number => performance.timeOrigin + performance.now()

/**
 * A bare SSE client for load: a raw socket, a hand-written GET, HTTP chunked decoding, and just enough SSE
 * parsing to pull `data:` lines. Each event's data is `{"seq":n,"t":ms}`; the receive time minus `t` is the
 * latency. Much cheaper per connection than an EventSource polyfill, so 10k fit in one process.
 */
export class SseLoadClient {
  readonly seqs: number[] = []
  connected = false
  closed = false
  private readonly socket: Socket
  private head = ''
  private chunked = false
  private chunkLeft = 0
  private pending = ''
  private text = ''

  constructor (port: number, path: string, private readonly latencies: number[] | undefined) {
    this.socket = connect(port, '127.0.0.1')
    this.socket.setEncoding('latin1')
    this.socket.on('connect', () => this.socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`))
    this.socket.on('data', (chunk: string) => this.onData(chunk))
    this.socket.on('close', () => { this.closed = true })
    this.socket.on('error', () => { this.closed = true })
  }

  close (): void {
    this.socket.destroy()
  }

  private onData (chunk: string): void {
    if (!this.connected) {
      this.head += chunk
      const end = this.head.indexOf('\r\n\r\n')
      if (end === -1) return
      this.connected = true
      this.chunked = /transfer-encoding:\s*chunked/i.test(this.head.slice(0, end))
      chunk = this.head.slice(end + 4)
      this.head = ''
    }
    this.onBody(this.chunked ? this.dechunk(chunk) : chunk)
  }

  private dechunk (chunk: string): string {
    this.pending += chunk
    let out = ''
    for (;;) {
      if (this.chunkLeft > 0) {
        const take = Math.min(this.chunkLeft, this.pending.length)
        out += this.pending.slice(0, take)
        this.pending = this.pending.slice(take)
        this.chunkLeft -= take
        if (this.chunkLeft > 0) break
        continue
      }
      const line = this.pending.indexOf('\r\n')
      if (line === -1) break
      const sizeText = this.pending.slice(0, line)
      this.pending = this.pending.slice(line + 2)
      if (sizeText === '') continue
      this.chunkLeft = parseInt(sizeText, 16)
      if (this.chunkLeft === 0) break
    }
    return out
  }

  private onBody (text: string): void {
    this.text += text
    let frameEnd: number
    while ((frameEnd = this.text.indexOf('\n\n')) !== -1) {
      const frame = this.text.slice(0, frameEnd)
      this.text = this.text.slice(frameEnd + 2)
      const dataAt = frame.startsWith('data: ') ? 0 : frame.indexOf('\ndata: ') + 1
      if (dataAt === 0 && !frame.startsWith('data: ')) continue
      const lineEnd = frame.indexOf('\n', dataAt)
      const data = frame.slice(dataAt + 6, lineEnd === -1 ? undefined : lineEnd)
      const event = JSON.parse(data) as { seq: number, t: number }
      this.seqs.push(event.seq)
      this.latencies?.push(now() - event.t)
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
