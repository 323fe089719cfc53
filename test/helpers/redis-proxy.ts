import { createServer, connect, type Server, type Socket } from 'node:net'

/** Which of Herald's Redis connections a proxied connection is, from the name ioredis sets in its handshake. */
export type Role = 'publisher' | 'subscriber' | 'other'

/** toRedis: bytes the client sends (commands); toClient: bytes Redis sends back (replies, pub/sub messages). */
export type Direction = 'toRedis' | 'toClient'

interface Flow {
  delayMs: number
  paused: boolean
}

type Flows = Record<Direction, Flow>

/** How many bytes of a connection's first commands are read to find its name (CLIENT SETNAME comes first). */
const SNIFF_LIMIT = 4096

/**
 * A loopback TCP proxy in front of a real Redis that can slow, stall or cut the connections of one role:
 * Herald names its connections `herald-<pid>-publisher` and `herald-<pid>-subscriber` (CLIENT SETNAME in the
 * ioredis handshake), and the proxy tags each connection by reading its first bytes.
 *
 * Settings are per role and apply to open and future connections alike. Bytes keep their order in each
 * direction: a delay holds every chunk for that long, and a pause keeps the bytes until `resume`, which
 * sends all of them at once in one write, as a link that stalled and then caught up would.
 */
export class RedisProxy {
  private readonly connections = new Set<ProxiedConnection>()
  private readonly settings: Record<Role, Flows> = {
    publisher: flows(),
    subscriber: flows(),
    other: flows()
  }

  private readonly triggers: Array<{ role: Role, pattern: RegExp, action: (connection: ProxiedConnection) => void }> = []

  private constructor (private readonly server: Server, readonly port: number, readonly targetPort: number) {}

  static async start (targetPort: number): Promise<RedisProxy> {
    const server = createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const address = server.address()
    const proxy = new RedisProxy(server, typeof address === 'object' && address !== null ? address.port : 0, targetPort)
    server.on('connection', (client) => proxy.accept(client))
    return proxy
  }

  /** A REDIS_URL for Herald. */
  get url (): string {
    return `redis://127.0.0.1:${this.port}`
  }

  /** Holds every chunk of a role's connections in one direction for `ms` (0 to stop delaying). */
  delay (role: Role, direction: Direction, ms: number): void {
    this.settings[role][direction].delayMs = ms
  }

  /** Stops forwarding a role's bytes in one direction; they are kept, in order, until `resume`. */
  pause (role: Role, direction: Direction): void {
    this.settings[role][direction].paused = true
  }

  /** Forwards what a pause kept (one write per connection), then lets bytes through again. */
  resume (role: Role, direction: Direction): void {
    this.settings[role][direction].paused = false
    for (const connection of this.connections) if (connection.role === role) connection.flush(direction)
  }

  /**
   * Runs `action` once, on the first chunk a connection of `role` sends that matches `pattern`, before the
   * chunk goes on to Redis: a pause set there holds Redis's answer to exactly that command.
   */
  onceClientSends (role: Role, pattern: RegExp, action: (connection: { pause: (direction: Direction) => void }) => void): void {
    this.triggers.push({ role, pattern, action })
  }

  /** Open connections of a role (tagged ones only once their name was seen). */
  count (role: Role): number {
    let count = 0
    for (const connection of this.connections) if (connection.role === role) count++
    return count
  }

  /** Destroys both sides of every connection of a role, or of all connections, as a network drop would. */
  cut (role?: Role): void {
    for (const connection of [...this.connections]) if (role === undefined || connection.role === role) connection.destroy()
  }

  async close (): Promise<void> {
    this.cut()
    await new Promise((resolve) => this.server.close(resolve))
  }

  /** @internal */
  flowsOf (role: Role): Flows {
    return this.settings[role]
  }

  /** @internal */
  fire (connection: ProxiedConnection, chunk: Buffer): void {
    if (!connection.tagged) return
    const text = chunk.toString('latin1')
    for (let index = 0; index < this.triggers.length; index++) {
      const trigger = this.triggers[index] as (typeof this.triggers)[number]
      if (trigger.role !== connection.role || !trigger.pattern.test(text)) continue
      this.triggers.splice(index--, 1)
      trigger.action(connection)
    }
  }

  private accept (client: Socket): void {
    const connection = new ProxiedConnection(this, client, connect(this.targetPort, '127.0.0.1'))
    this.connections.add(connection)
    connection.onClose(() => this.connections.delete(connection))
  }
}

interface Delayed {
  due: number
  chunk: Buffer
}

class ProxiedConnection {
  role: Role = 'other'
  tagged = false
  private sniffed = ''
  private closed = false
  private readonly kept: Record<Direction, Buffer[]> = { toRedis: [], toClient: [] }
  private readonly delayed: Record<Direction, Delayed[]> = { toRedis: [], toClient: [] }
  private readonly closeListeners: Array<() => void> = []
  private readonly paused: Record<Direction, boolean> = { toRedis: false, toClient: false }

  constructor (private readonly proxy: RedisProxy, private readonly client: Socket, private readonly upstream: Socket) {
    for (const socket of [client, upstream]) {
      socket.setNoDelay(true)
      socket.on('error', () => {})
      socket.on('close', () => this.destroy())
    }
    client.on('data', (chunk: Buffer) => {
      this.sniff(chunk)
      this.proxy.fire(this, chunk)
      this.forward('toRedis', chunk)
    })
    upstream.on('data', (chunk: Buffer) => this.forward('toClient', chunk))
  }

  onClose (listener: () => void): void {
    this.closeListeners.push(listener)
  }

  /** Pauses one direction of this connection only, until the role is resumed. */
  pause (direction: Direction): void {
    this.paused[direction] = true
  }

  flush (direction: Direction): void {
    this.paused[direction] = false
    if (this.isPaused(direction) || this.kept[direction].length === 0) return
    const chunk = Buffer.concat(this.kept[direction])
    this.kept[direction] = []
    this.send(direction, chunk)
  }

  destroy (): void {
    if (this.closed) return
    this.closed = true
    this.client.destroy()
    this.upstream.destroy()
    for (const listener of this.closeListeners) listener()
  }

  private isPaused (direction: Direction): boolean {
    return this.paused[direction] || this.proxy.flowsOf(this.role)[direction].paused
  }

  private forward (direction: Direction, chunk: Buffer): void {
    // Keep order behind bytes that are still held.
    if (this.isPaused(direction) || this.kept[direction].length > 0) {
      this.kept[direction].push(chunk)
      if (!this.isPaused(direction)) this.flush(direction)
      return
    }
    this.send(direction, chunk)
  }

  private send (direction: Direction, chunk: Buffer): void {
    const target = direction === 'toRedis' ? this.upstream : this.client
    const delayMs = this.proxy.flowsOf(this.role)[direction].delayMs
    const queue = this.delayed[direction]
    if (delayMs <= 0 && queue.length === 0) {
      if (!this.closed) target.write(chunk)
      return
    }
    // Each chunk waits its delay from when it arrived, and never overtakes one that arrived before it.
    queue.push({ due: Date.now() + delayMs, chunk })
    if (queue.length === 1) this.drain(direction)
  }

  private drain (direction: Direction): void {
    const target = direction === 'toRedis' ? this.upstream : this.client
    const queue = this.delayed[direction]
    while (queue.length > 0 && (queue[0] as Delayed).due <= Date.now()) {
      const { chunk } = queue.shift() as Delayed
      if (!this.closed) target.write(chunk)
    }
    if (queue.length > 0 && !this.closed) setTimeout(() => this.drain(direction), (queue[0] as Delayed).due - Date.now())
  }

  private sniff (chunk: Buffer): void {
    if (this.tagged || this.sniffed.length > SNIFF_LIMIT) return
    this.sniffed += chunk.toString('latin1')
    const match = /herald-\d+-(publisher|subscriber)/.exec(this.sniffed)
    if (match !== null) {
      this.role = match[1] as Role
      this.tagged = true
      this.sniffed = ''
    }
  }
}

function flows (): Flows {
  return { toRedis: { delayMs: 0, paused: false }, toClient: { delayMs: 0, paused: false } }
}
