import { request, type IncomingHttpHeaders, type IncomingMessage } from 'node:http'
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2'
import { request as httpsRequest } from 'node:https'
import type { Readable } from 'node:stream'
import { SseParser, type ParsedEvent } from '../../src/sse/parser.js'
import { until } from '../helper.js'
import { testCertificate } from './tls.js'

export interface StreamClient {
  status: number
  headers: IncomingHttpHeaders
  /** 'http/1.1' or 'h2': what the connection speaks. */
  protocol: string
  events: ParsedEvent[]
  /** The raw text received, for framing assertions. */
  text: () => string
  comments: () => number
  ended: () => boolean
  /** HTTP/2: the RST_STREAM code the stream was closed with (0 for a clean end), once it closed. */
  resetCode: () => number | undefined
  /**
   * HTTP/2: the bytes the server may still send on this stream before the client grants more (the stream's
   * flow-control window, as the client has seen it); undefined over HTTP/1.1.
   */
  receiveWindow: () => number | undefined
  waitForEvents: (count: number, timeoutMs?: number) => Promise<ParsedEvent[]>
  /** Stops reading (the bytes wait in the kernel, or in HTTP/2 flow control), and reads again. */
  pause: () => void
  resume: () => void
  close: () => void
}

export interface StreamOptions {
  /** For https:// URLs: HTTP/1.1 (ALPN http/1.1) instead of HTTP/2. */
  http1?: boolean
  /** HTTP/2: a session to open the stream on, shared with other streams (left open by close()). */
  session?: ClientHttp2Session
  /** http:// only: the source address (any of 127/8 on loopback), to be another client host. */
  localAddress?: string
}

/**
 * An SSE client: resolves once the response headers and first bytes arrive (subscribed), then collects events
 * parsed the way a browser parses them. http:// URLs are read with node:http; https:// ones (a Herald serving
 * the test certificate) with node:http2, or node:https with `http1`.
 */
export async function openStream (url: string, headers: Record<string, string> = {}, options: StreamOptions = {}): Promise<StreamClient> {
  if (url.startsWith('https:') && options.http1 !== true) return await openHttp2Stream(url, headers, options.session)
  return await new Promise((resolve, reject) => {
    const onResponse = (response: IncomingMessage): void => {
      receive(response, { status: response.statusCode ?? 0, headers: response.headers, protocol: 'http/1.1', resetCode: () => undefined, receiveWindow: () => undefined, close: () => req.destroy() }, resolve)
    }
    const requestHeaders = { accept: 'text/event-stream', ...headers }
    const req = url.startsWith('https:')
      ? httpsRequest(url, { headers: requestHeaders, ca: testCertificate().ca }, onResponse)
      : request(url, { headers: requestHeaders, ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }) }, onResponse)
    req.on('error', reject)
    req.end()
  })
}

async function openHttp2Stream (url: string, headers: Record<string, string>, shared: ClientHttp2Session | undefined): Promise<StreamClient> {
  const target = new URL(url)
  const session = shared ?? connect(target.origin, { ca: testCertificate().ca })
  session.on('error', () => {})
  return await new Promise((resolve, reject) => {
    const stream: ClientHttp2Stream = session.request({ ':path': target.pathname + target.search, accept: 'text/event-stream', ...headers })
    stream.on('response', (responseHeaders) => {
      receive(stream, {
        status: Number(responseHeaders[':status']),
        headers: responseHeaders,
        protocol: 'h2',
        resetCode: () => stream.closed ? stream.rstCode : undefined,
        receiveWindow: () => stream.closed ? undefined : stream.state.localWindowSize,
        close: () => {
          stream.close(constants.NGHTTP2_CANCEL)
          if (shared === undefined) session.close()
        }
      }, resolve)
    })
    stream.on('error', (error) => {
      if (shared === undefined) session.close()
      reject(error)
    })
    stream.end()
  })
}

type Received = Pick<StreamClient, 'status' | 'headers' | 'protocol' | 'resetCode' | 'receiveWindow' | 'close'>

/** Collects a response body as events; resolves the client with its first bytes, or with its end. */
function receive (body: Readable, response: Received, resolve: (client: StreamClient) => void): void {
  const events: ParsedEvent[] = []
  const parser = new SseParser((event) => events.push(event))
  let raw = ''
  let ended = false
  body.setEncoding('utf8')
  const client: StreamClient = {
    ...response,
    events,
    text: () => raw,
    comments: () => parser.comments,
    ended: () => ended,
    waitForEvents: async (count, timeoutMs = 5_000) => {
      await until(() => events.length >= count || ended, timeoutMs, `${count} events (have ${events.length})`)
      return events
    },
    pause: () => { body.pause() },
    resume: () => { body.resume() }
  }
  let resolved = false
  body.on('data', (chunk: string) => {
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
  body.on('end', finish)
  body.on('close', finish)
  body.on('error', finish)
}

/** The JSON payloads of a client's events, in order. */
export function payloads (events: ParsedEvent[]): unknown[] {
  return events.filter((event) => event.event !== 'herald.reset').map((event) => JSON.parse(event.data))
}
