import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { freePort } from './redis-server.js'

interface Server {
  port: number
  process: ChildProcess | undefined
}

export interface RedisSentinelOptions {
  /** The master's name the sentinels monitor (default herald-master). */
  masterName?: string
  /** down-after-milliseconds (default 1000). */
  downAfterMs?: number
  /** Extra redis-server arguments for the master and the replica (e.g. ACL users). */
  serverArgs?: string[]
}

const PROBE_OPTIONS = { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 1_000, commandTimeout: 2_000 }

/**
 * A real Sentinel deployment on loopback that the test owns: one master, one replica and three sentinels
 * (`redis-server --sentinel`, quorum 2), ready when every sentinel knows the replica and the two other sentinels.
 * Every process is stopped by PID in `stop` (call it in t.after). Every wait is bounded.
 */
export class RedisSentinel {
  readonly directory = mkdtempSync(join(tmpdir(), 'herald-sentinel-'))
  private stopped = false

  private constructor (
    readonly servers: Server[],
    readonly sentinels: Server[],
    private readonly options: Required<RedisSentinelOptions>
  ) {}

  static async start (options: RedisSentinelOptions = {}): Promise<RedisSentinel> {
    const filled: Required<RedisSentinelOptions> = { masterName: 'herald-master', downAfterMs: 1_000, serverArgs: [], ...options }
    const ports = new Set<number>()
    while (ports.size < 5) ports.add(await freePort())
    const [master, replica, ...sentinelPorts] = [...ports].map((port) => ({ port, process: undefined }))
    if (master === undefined || replica === undefined) throw new Error('unreachable: five ports were picked')
    const deployment = new RedisSentinel([master, replica], sentinelPorts, filled)
    try {
      await deployment.startServer(master, [])
      await deployment.startServer(replica, ['--replicaof', '127.0.0.1', String(master.port)])
      for (const sentinel of deployment.sentinels) await deployment.startSentinel(sentinel, master.port)
      await deployment.waitUntil(async () => {
        for (const sentinel of deployment.sentinels) {
          const fields = await deployment.sentinelMaster(sentinel.port)
          if (fields['num-slaves'] !== '1' || fields['num-other-sentinels'] !== '2') return false
        }
        return true
      }, 30_000, 'the sentinels did not see the replica and each other')
    } catch (error) {
      await deployment.stop()
      throw error
    }
    return deployment
  }

  get masterName (): string {
    return this.options.masterName
  }

  /** redis+sentinel://127.0.0.1:<s1>,127.0.0.1:<s2>,127.0.0.1:<s3>/<master name>, Herald's REDIS_URL for it. */
  get url (): string {
    return `redis+sentinel://${this.sentinels.map(({ port }) => `127.0.0.1:${port}`).join(',')}/${this.options.masterName}`
  }

  /** The port of the master the sentinels name now. */
  async masterPort (): Promise<number> {
    for (const sentinel of this.sentinels) {
      if (sentinel.process === undefined) continue
      try {
        const [, port] = await this.command(sentinel.port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', this.options.masterName) as string[]
        return Number(port)
      } catch {}
    }
    throw new Error('no sentinel answered GET-MASTER-ADDR-BY-NAME')
  }

  /**
   * SIGKILLs the master and waits, at most `withinMs`, until the sentinels name the replica as master and it says
   * role:master. Returns its port and how long the promotion took.
   */
  async killMaster (withinMs = 30_000): Promise<{ promotedPort: number, ms: number }> {
    const port = await this.masterPort()
    const server = this.servers.find((candidate) => candidate.port === port)
    if (server === undefined) throw new Error(`the master 127.0.0.1:${port} is not one of ours`)
    const started = Date.now()
    await signal(server, 'SIGKILL')
    let promotedPort = 0
    await this.waitUntil(async () => {
      promotedPort = await this.masterPort()
      if (promotedPort === port) return false
      const role = await this.command(promotedPort, 'ROLE') as unknown[]
      return role[0] === 'master'
    }, withinMs, `no replica of 127.0.0.1:${port} was promoted`)
    return { promotedPort, ms: Date.now() - started }
  }

  /** Runs one command on one process and disconnects. */
  async command (port: number, name: string, ...args: string[]): Promise<unknown> {
    const client = new Redis(port, '127.0.0.1', PROBE_OPTIONS)
    client.on('error', () => {})
    try {
      await client.connect()
      return await client.call(name, ...args)
    } finally {
      client.disconnect()
    }
  }

  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    await Promise.all([...this.sentinels, ...this.servers].map(async (server) => await signal(server, 'SIGKILL')))
    rmSync(this.directory, { recursive: true, force: true })
  }

  private async sentinelMaster (port: number): Promise<Record<string, string>> {
    const flat = await this.command(port, 'SENTINEL', 'MASTER', this.options.masterName) as string[]
    const fields: Record<string, string> = {}
    for (let index = 0; index + 1 < flat.length; index += 2) fields[String(flat[index])] = String(flat[index + 1])
    return fields
  }

  private async startServer (server: Server, extra: string[]): Promise<void> {
    await this.spawnAndWait(server, ['--port', String(server.port), '--bind', '127.0.0.1', '--dir', this.directory, '--save', '',
      '--appendonly', 'no', '--logfile', `redis-${server.port}.log`, ...this.options.serverArgs, ...extra])
  }

  private async startSentinel (sentinel: Server, masterPort: number): Promise<void> {
    // Sentinel rewrites its config file as it learns the deployment: one writable file each.
    const file = join(this.directory, `sentinel-${sentinel.port}.conf`)
    writeFileSync(file, [
      `port ${sentinel.port}`,
      'bind 127.0.0.1',
      `dir ${this.directory}`,
      `logfile sentinel-${sentinel.port}.log`,
      `sentinel monitor ${this.options.masterName} 127.0.0.1 ${masterPort} 2`,
      `sentinel down-after-milliseconds ${this.options.masterName} ${this.options.downAfterMs}`,
      `sentinel failover-timeout ${this.options.masterName} 5000`,
      `sentinel parallel-syncs ${this.options.masterName} 1`,
      ''
    ].join('\n'))
    await this.spawnAndWait(sentinel, [file, '--sentinel'])
  }

  private async spawnAndWait (server: Server, args: string[]): Promise<void> {
    const child = spawn('redis-server', args, { stdio: 'ignore' })
    server.process = child
    child.once('exit', () => { if (server.process === child) server.process = undefined })
    await this.waitUntil(async () => {
      if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode} on port ${server.port} (logs in ${this.directory})`)
      return await this.command(server.port, 'PING') === 'PONG'
    }, 10_000, `redis-server did not answer on port ${server.port}`)
  }

  private async waitUntil (check: () => Promise<boolean>, withinMs: number, what: string): Promise<void> {
    const deadline = Date.now() + withinMs
    let lastError: unknown
    while (Date.now() < deadline) {
      try {
        if (await check()) return
      } catch (error) {
        if ((error as Error).message.startsWith('redis-server exited')) throw error
        lastError = error
      }
      await sleep(100)
    }
    throw new Error(`${what} within ${withinMs} ms${lastError === undefined ? '' : ` (last error: ${String(lastError)})`}`)
  }
}

async function signal (server: Server, name: NodeJS.Signals): Promise<void> {
  const child = server.process
  server.process = undefined
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill(name)
  await exited
}
