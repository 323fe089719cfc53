import { connect, type Socket } from 'node:net'

const readBuffer = Buffer.allocUnsafe(64 * 1024)

interface Waiting {
  resolve: (status: number) => void
  sentAt: number
}

/**
 * One keep-alive HTTP/1.1 connection for POSTs, pipelined: `post` may be called again before the previous
 * answer, and answers resolve in order (HTTP/1.1 pipelining). Resolves with the status code, or 0 when the
 * connection failed or an answer took longer than `timeoutMs` (the socket is then dropped and reopened on
 * the next post). Responses must carry Content-Length, which Fastify and nginx both send for these bodies.
 */
export class HttpPublisher {
  private socket: Socket | undefined
  private waiting: Waiting[] = []
  private buffer = ''
  private bodyLeft = 0
  private status = 0
  private readonly watchdog: NodeJS.Timeout

  constructor (private readonly port: number, private readonly timeoutMs = 5_000) {
    this.watchdog = setInterval(() => {
      const oldest = this.waiting[0]
      if (oldest !== undefined && Date.now() - oldest.sentAt > this.timeoutMs) this.socket?.destroy()
    }, 500)
    this.watchdog.unref()
  }

  async post (path: string, body: string): Promise<number> {
    const socket = this.socket ?? this.open()
    socket.write(`POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
    return await new Promise((resolve) => this.waiting.push({ resolve, sentAt: Date.now() }))
  }

  close (): void {
    clearInterval(this.watchdog)
    this.socket?.destroy()
  }

  private open (): Socket {
    const socket = connect({
      port: this.port,
      host: '127.0.0.1',
      noDelay: true,
      // As in SseLoadClient: one shared read buffer, no Buffer per read and no Readable machinery.
      onread: { buffer: readBuffer, callback: (length) => this.onData(readBuffer.toString('latin1', 0, length)) }
    })
    socket.on('error', () => {})
    socket.on('close', () => {
      if (this.socket !== socket) return
      this.socket = undefined
      this.buffer = ''
      this.bodyLeft = 0
      const failed = this.waiting
      this.waiting = []
      for (const { resolve } of failed) resolve(0)
    })
    this.socket = socket
    return socket
  }

  /** Returns true: `onread` pauses the socket when its callback returns false. */
  private onData (chunk: string): true {
    const text = this.buffer.length === 0 ? chunk : this.buffer + chunk
    let at = 0
    while (at < text.length) {
      if (this.bodyLeft > 0) {
        const take = Math.min(this.bodyLeft, text.length - at)
        at += take
        this.bodyLeft -= take
        if (this.bodyLeft === 0) this.complete()
        continue
      }
      const end = text.indexOf('\r\n\r\n', at)
      if (end === -1) break
      const head = text.slice(at, end)
      at = end + 4
      this.status = Number(head.slice(9, 12))
      const length = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head)
      if (length === null) {
        this.socket?.destroy()
        return true
      }
      this.bodyLeft = Number(length[1])
      if (this.bodyLeft === 0) this.complete()
    }
    this.buffer = at === 0 ? text : text.slice(at)
    return true
  }

  private complete (): void {
    this.waiting.shift()?.resolve(this.status)
  }
}
