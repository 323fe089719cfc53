import { request, type IncomingHttpHeaders } from 'node:http'
import { SseParser, type ParsedEvent } from '../../src/sse/parser.js'
import { until } from '../helper.js'

export interface StreamClient {
  status: number
  headers: IncomingHttpHeaders
  events: ParsedEvent[]
  /** The raw text received, for framing assertions. */
  text: () => string
  comments: () => number
  ended: () => boolean
  waitForEvents: (count: number, timeoutMs?: number) => Promise<ParsedEvent[]>
  close: () => void
}

/**
 * A raw node:http SSE client: resolves once the response headers and first bytes arrive (subscribed),
 * then collects events parsed the way a browser parses them. `localAddress` picks the source address (any of
 * 127/8 on loopback), to be another client host.
 */
export async function openStream (url: string, headers: Record<string, string> = {}, localAddress?: string): Promise<StreamClient> {
  return await new Promise((resolve, reject) => {
    const events: ParsedEvent[] = []
    const parser = new SseParser((event) => events.push(event))
    let raw = ''
    let ended = false
    const req = request(url, { headers: { accept: 'text/event-stream', ...headers }, ...(localAddress === undefined ? {} : { localAddress }) }, (response) => {
      response.setEncoding('utf8')
      const client: StreamClient = {
        status: response.statusCode ?? 0,
        headers: response.headers,
        events,
        text: () => raw,
        comments: () => parser.comments,
        ended: () => ended,
        waitForEvents: async (count, timeoutMs = 5_000) => {
          await until(() => events.length >= count || ended, timeoutMs, `${count} events (have ${events.length})`)
          return events
        },
        close: () => req.destroy()
      }
      let resolved = false
      response.on('data', (chunk: string) => {
        raw += chunk
        parser.push(chunk)
        if (!resolved) {
          resolved = true
          resolve(client)
        }
      })
      const finish = (): void => {
        ended = true
        if (!resolved) {
          resolved = true
          resolve(client)
        }
      }
      response.on('end', finish)
      response.on('close', finish)
      response.on('error', finish)
    })
    req.on('error', (error) => {
      ended = true
      reject(error)
    })
    req.end()
  })
}

/** The JSON payloads of a client's events, in order. */
export function payloads (events: ParsedEvent[]): unknown[] {
  return events.filter((event) => event.event !== 'herald.reset').map((event) => JSON.parse(event.data))
}
