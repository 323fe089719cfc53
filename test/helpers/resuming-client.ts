import { request } from 'node:http'
import { SseParser } from '../../src/sse/parser.js'
import { parseId } from './event-ids.js'

/**
 * A client that behaves like a browser's EventSource across failures: when its stream ends or breaks it
 * reconnects (to the next of its URLs, as a balancer would send it elsewhere) with Last-Event-ID.
 * It records every event id it saw, to count what was lost or duplicated.
 */
export class ResumingClient {
  readonly ids: string[] = []
  /** Reset notices received, with how many events had arrived before each. */
  readonly resets: Array<{ reason: string, afterEvents: number }> = []
  connections = 0
  /** In-band refusals received (`herald.unavailable`), each followed by a retry. */
  refusals = 0
  private lastEventId: string | undefined
  private current: ReturnType<typeof request> | undefined
  private stopped = false
  private target = 0

  constructor (private readonly urls: string[], private readonly path: string, private readonly retryMs = 50) {}

  start (): void {
    this.connect()
  }

  /** Sends the next reconnect to another base URL. */
  failOverTo (index: number): void {
    this.target = index
  }

  stop (): void {
    this.stopped = true
    this.current?.destroy()
  }

  private connect (): void {
    if (this.stopped) return
    const headers: Record<string, string> = { accept: 'text/event-stream' }
    if (this.lastEventId !== undefined) headers['last-event-id'] = this.lastEventId
    const parser = new SseParser((event) => {
      if (event.event === 'herald.reset') {
        this.resets.push({ reason: (JSON.parse(event.data) as { reason: string }).reason, afterEvents: this.ids.length })
        return
      }
      // A refusal (`herald.unavailable`) carries no id: it must not move the resume point.
      if (event.event === 'herald.unavailable') {
        this.refusals++
        return
      }
      this.lastEventId = event.id
      this.ids.push(event.id)
    })
    let retried = false
    const retry = (): void => {
      if (retried) return
      retried = true
      setTimeout(() => this.connect(), this.retryMs)
    }
    const req = request(`${this.urls[this.target]}${this.path}`, { headers }, (response) => {
      if (response.statusCode !== 200) {
        response.resume()
        response.on('end', retry)
        return
      }
      this.connections++
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => parser.push(chunk))
      response.on('end', retry)
      response.on('close', retry)
      response.on('error', retry)
    })
    req.on('error', retry)
    req.end()
    this.current = req
  }
}

/**
 * Lost, duplicated and out-of-order counts of what a client saw against what was accepted. Ids are
 * `<epoch>-<seq>`: order is checked within an epoch (a new epoch starts its sequence again).
 */
export function tally (received: string[], accepted: string[], ambiguous: string[] = []): { lost: number, duplicated: number, outOfOrder: number, unexpected: number } {
  const seen = new Set<string>()
  let duplicated = 0
  let outOfOrder = 0
  let previous = { epoch: '', seq: 0 }
  for (const id of received) {
    if (seen.has(id)) duplicated++
    seen.add(id)
    const current = parseId(id)
    if (current.epoch === previous.epoch && current.seq <= previous.seq) outOfOrder++
    if (current.epoch !== previous.epoch || current.seq > previous.seq) previous = current
  }
  const known = new Set([...accepted, ...ambiguous])
  return {
    lost: accepted.filter((id) => !seen.has(id)).length,
    duplicated,
    outOfOrder,
    unexpected: [...seen].filter((id) => !known.has(id)).length
  }
}

/** The counts of `tally` summed over clients. */
export function tallyAll (clients: Array<{ ids: string[] }>, accepted: string[]): ReturnType<typeof tally> {
  const total = { lost: 0, duplicated: 0, outOfOrder: 0, unexpected: 0 }
  for (const client of clients) {
    const counts = tally(client.ids, accepted)
    total.lost += counts.lost
    total.duplicated += counts.duplicated
    total.outOfOrder += counts.outOfOrder
    total.unexpected += counts.unexpected
  }
  return total
}
