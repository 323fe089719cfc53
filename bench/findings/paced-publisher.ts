import { setTimeout as sleep } from 'node:timers/promises'
import { HttpPublisher } from '../http-publisher.js'
import { now } from '../sse-client.js'

export interface PublishSample {
  /** The request's number, as given to the body function. */
  seq: number
  /** When the request was sent (`now()`). */
  sentAt: number
  /** Until its answer arrived. */
  ms: number
  /** The HTTP status, 0 when the connection failed or no answer came within the timeout. */
  status: number
}

export interface PacedPublisherOptions {
  connections?: number
  /** Unanswered requests per connection before a due one is skipped instead of sent. */
  maxInFlight?: number
  /** An answer later than this counts as status 0 (and its connection is reopened). */
  timeoutMs?: number
}

/**
 * POSTs /v1/events at a fixed rate, open loop: each request goes out when it is due whether or not earlier ones
 * were answered, so a server that stalls shows it as latency, not as a lower rate. Requests are pipelined over
 * keep-alive connections (round robin). A connection with `maxInFlight` unanswered requests skips its turn
 * (counted in `skipped`), so a stalled server cannot make this process queue without bound.
 */
export class PacedPublisher {
  readonly samples: PublishSample[] = []
  skipped = 0
  private readonly connections: HttpPublisher[]
  private readonly inFlight: number[]
  private readonly maxInFlight: number
  private readonly answers = new Set<Promise<void>>()
  private running = false
  private loop: Promise<void> | undefined

  constructor (port: number, private readonly rate: number, private readonly body: (seq: number) => string, options: PacedPublisherOptions = {}) {
    const count = options.connections ?? 1
    this.connections = Array.from({ length: count }, () => new HttpPublisher(port, options.timeoutMs ?? 30_000))
    this.inFlight = this.connections.map(() => 0)
    this.maxInFlight = options.maxInFlight ?? 256
  }

  start (): void {
    this.running = true
    this.loop = this.run()
  }

  /** Stops sending, waits for the answers still due (each bounded by the timeout), closes the connections. */
  async stop (): Promise<void> {
    this.running = false
    await this.loop
    await Promise.all(this.answers)
    for (const connection of this.connections) connection.close()
  }

  /** Samples of the requests sent in [from, to). */
  sentBetween (from: number, to: number): PublishSample[] {
    return this.samples.filter((sample) => sample.sentAt >= from && sample.sentAt < to)
  }

  /** Answers per second with a 2xx status over the samples sent in [from, to). */
  acceptedRate (from: number, to: number): number {
    return this.sentBetween(from, to).filter((sample) => sample.status >= 200 && sample.status < 300).length / ((to - from) / 1000)
  }

  private async run (): Promise<void> {
    const started = now()
    for (let seq = 0; this.running; seq++) {
      const wait = started + (seq * 1000) / this.rate - now()
      if (wait > 1) await sleep(wait)
      if (!this.running) return
      const index = seq % this.connections.length
      if ((this.inFlight[index] as number) >= this.maxInFlight) {
        this.skipped++
        continue
      }
      this.inFlight[index] = (this.inFlight[index] as number) + 1
      const sentAt = now()
      const answer = (this.connections[index] as HttpPublisher).post('/v1/events', this.body(seq)).then((status) => {
        this.inFlight[index] = (this.inFlight[index] as number) - 1
        this.samples.push({ seq, sentAt, ms: now() - sentAt, status })
      })
      this.answers.add(answer)
      answer.finally(() => this.answers.delete(answer)).catch(() => {})
    }
  }
}
