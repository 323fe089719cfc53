/** One dispatched event: the `id` is the stream's last event id when it was dispatched (`''` before any). */
export interface SseMessage {
  type: string
  data: string
  id: string
}

/**
 * The WHATWG event stream parser (as EventSource reads a stream), fed text as it arrives: lines end in CRLF, LF or
 * CR, a blank line dispatches the block, a block without `data:` dispatches nothing, comments are ignored, and
 * `retry:` with digits only sets `retryMs`. Ids are opaque strings, kept as they come.
 */
export class SseParser {
  /** The last event id of the stream; `id:` lines change it, including for blocks that dispatch nothing. */
  lastEventId = ''
  retryMs: number | undefined
  private buffer = ''
  private data: string[] = []
  private type = ''
  /** The previous chunk ended in CR: an LF at the start of this one belongs to that line end. */
  private pendingCr = false
  private started = false

  constructor (private readonly dispatch: (message: SseMessage) => void) {}

  push (text: string): void {
    if (!this.started && text !== '') {
      this.started = true
      if (text.startsWith('\uFEFF')) text = text.slice(1)
    }
    if (this.pendingCr && text.startsWith('\n')) text = text.slice(1)
    this.pendingCr = false
    this.buffer += text
    let start = 0
    for (let index = 0; index < this.buffer.length; index++) {
      const char = this.buffer[index]
      if (char !== '\n' && char !== '\r') continue
      this.line(this.buffer.slice(start, index))
      if (char === '\r') {
        if (index + 1 === this.buffer.length) this.pendingCr = true
        else if (this.buffer[index + 1] === '\n') index++
      }
      start = index + 1
    }
    this.buffer = this.buffer.slice(start)
  }

  private line (line: string): void {
    if (line === '') {
      this.end()
      return
    }
    if (line.startsWith(':')) return
    const colon = line.indexOf(':')
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    switch (field) {
      case 'event':
        this.type = value
        break
      case 'data':
        this.data.push(value)
        break
      case 'id':
        if (!value.includes('\0')) this.lastEventId = value
        break
      case 'retry':
        if (/^\d+$/.test(value)) this.retryMs = Number(value)
        break
    }
  }

  private end (): void {
    const data = this.data
    const type = this.type
    this.data = []
    this.type = ''
    if (data.length === 0) return
    this.dispatch({ type: type === '' ? 'message' : type, data: data.join('\n'), id: this.lastEventId })
  }
}
