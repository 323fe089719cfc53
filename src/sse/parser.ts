/**
 * An incremental Server-Sent Events parser that follows the WHATWG algorithm: lines end at CR, LF or CRLF,
 * `data` lines join with LF, comments and unknown fields are ignored, `id` with NUL is ignored.
 * Herald's tests use it to see a stream exactly as a browser would.
 */

export interface ParsedEvent {
  id: string
  event: string
  data: string
  retry?: number
}

export class SseParser {
  private buffer = ''
  private data: string[] = []
  private eventType = ''
  /** The stream's last event id: `id:` lines change it, also in blocks that dispatch nothing. */
  lastEventId = ''
  private retry: number | undefined
  /** Comment lines seen, heartbeats among them. */
  comments = 0

  constructor (private readonly onEvent: (event: ParsedEvent) => void) {}

  push (chunk: string): void {
    this.buffer += chunk
    let start = 0
    for (;;) {
      const cr = this.buffer.indexOf('\r', start)
      const lf = this.buffer.indexOf('\n', start)
      if (cr === -1 && lf === -1) break
      let end: number
      let next: number
      if (cr !== -1 && (lf === -1 || cr < lf)) {
        // A CR at the end of the buffer may be the first half of CRLF: wait for more.
        if (cr === this.buffer.length - 1) break
        end = cr
        next = this.buffer[cr + 1] === '\n' ? cr + 2 : cr + 1
      } else {
        end = lf
        next = lf + 1
      }
      this.line(this.buffer.slice(start, end))
      start = next
    }
    this.buffer = this.buffer.slice(start)
  }

  private line (line: string): void {
    if (line === '') return this.dispatch()
    if (line.startsWith(':')) {
      this.comments++
      return
    }
    const colon = line.indexOf(':')
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    if (field === 'data') this.data.push(value)
    else if (field === 'event') this.eventType = value
    else if (field === 'id' && !value.includes('\0')) this.lastEventId = value
    else if (field === 'retry' && /^\d+$/.test(value)) this.retry = Number(value)
  }

  private dispatch (): void {
    if (this.data.length > 0) {
      const event: ParsedEvent = { id: this.lastEventId, event: this.eventType === '' ? 'message' : this.eventType, data: this.data.join('\n') }
      if (this.retry !== undefined) event.retry = this.retry
      this.onEvent(event)
    }
    this.data = []
    this.eventType = ''
  }
}
