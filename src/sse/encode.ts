/**
 * Server-Sent Events framing (https://html.spec.whatwg.org/multipage/server-sent-events.html).
 * A client splits the stream on CR, LF and CRLF, so every value written here is either split into
 * several `data:` lines or refused: no input can add a field or end a frame early.
 */

const LINE_BREAK = /\r\n|\r|\n/

export interface SseFrame {
  id?: string | number | undefined
  event?: string | undefined
  retry?: number | undefined
  data: string
}

/** True when a value can stand on one SSE field line: no CR, LF or NUL. */
export function isSingleLine (value: string): boolean {
  return !/[\r\n\0]/.test(value)
}

/** Encodes one event. `data` may span lines; `id` and `event` must be single lines. */
export function encodeFrame (frame: SseFrame): string {
  let text = ''
  if (frame.id !== undefined) text += `id: ${fieldValue('id', String(frame.id))}\n`
  if (frame.event !== undefined) text += `event: ${fieldValue('event', frame.event)}\n`
  if (frame.retry !== undefined) text += `retry: ${Math.trunc(frame.retry)}\n`
  for (const line of frame.data.split(LINE_BREAK)) text += `data: ${line}\n`
  return text + '\n'
}

/**
 * Encodes comment lines, for the opening and heartbeats: every client ignores them. No blank line follows: a
 * blank line ends a block, and some clients (@microsoft/fetch-event-source) report every block as a message,
 * an empty one when it has no data. Comment lines before an event's lines change nothing about the event.
 */
export function encodeComment (text = ''): string {
  return text.split(LINE_BREAK).map((line) => `:${line === '' ? '' : ' ' + line}\n`).join('')
}

/** Encodes only a reconnection delay: a line that clients apply as they read it, so no blank line either. */
export function encodeRetry (milliseconds: number): string {
  return `retry: ${Math.trunc(milliseconds)}\n`
}

/**
 * What a stream starts with: `: herald` and the reconnection delay, sent at once (the headers reach the client
 * only with the first bytes). No client turns it into a message: it has no data, and no blank line ends it.
 */
export function encodeOpening (retryMs: number): string {
  return encodeComment('herald') + encodeRetry(retryMs)
}

function fieldValue (name: string, value: string): string {
  // The id field is also ignored by clients when it holds NUL; refusing both keeps ids and types exact.
  if (!isSingleLine(value)) throw new TypeError(`SSE ${name} must not contain CR, LF or NUL`)
  return value
}
