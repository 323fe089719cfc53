import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'

/** A free TCP port on loopback, from the kernel. */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0))
    })
  })
}

function assertInstalled (): void {
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8' })
  if (probe.error !== undefined || probe.status !== 0) {
    throw new Error('redis-server is not installed: run `apt-get install -y redis-server` (.ci/run does it for you)')
  }
}

export interface RedisServerOptions {
  /** Turn AOF on (fsync always), for tests that restart Redis and expect the data back. */
  appendOnly?: boolean
  /** With appendOnly: `everysec` loses up to a second of acknowledged writes to a crash, as many deployments do. */
  appendFsync?: 'always' | 'everysec'
}

/**
 * A real redis-server the test owns: a free port on 127.0.0.1, its own directory, stopped by PID.
 * It can be killed and started again on the same port to test outages.
 */
export class RedisServer {
  private process: ChildProcess | undefined
  readonly directory = mkdtempSync(join(tmpdir(), 'herald-redis-'))

  private constructor (readonly port: number, private readonly options: RedisServerOptions) {}

  static async start (options: RedisServerOptions = {}): Promise<RedisServer> {
    assertInstalled()
    const server = new RedisServer(await freePort(), options)
    await server.startProcess()
    return server
  }

  get url (): string {
    return `redis://127.0.0.1:${this.port}`
  }

  /** The running redis-server's process id (a new one after `kill` and `startProcess`). */
  get pid (): number | undefined {
    return this.process?.pid
  }

  /** A fresh client for assertions (PUBSUB NUMSUB, XTRIM …); the caller quits it. */
  client (): Redis {
    return new Redis(this.url, { lazyConnect: false, maxRetriesPerRequest: 1 })
  }

  async startProcess (): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.directory, '--save', '']
    args.push('--appendonly', this.options.appendOnly === true ? 'yes' : 'no')
    if (this.options.appendOnly === true) args.push('--appendfsync', this.options.appendFsync ?? 'always')
    const child = spawn('redis-server', args, { stdio: 'ignore' })
    this.process = child
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline) {
      const probe = new Redis(this.url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 })
      probe.on('error', () => {})
      try {
        await probe.connect()
        await probe.ping()
        probe.disconnect()
        return
      } catch {
        probe.disconnect()
        if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode} on port ${this.port}`)
        await sleep(50)
      }
    }
    throw new Error(`redis-server did not answer on port ${this.port} within 10 s`)
  }

  /**
   * Stops the server without closing anything (SIGSTOP): connections stay open and commands get no answer, as
   * with a hung or swapping Redis. Pair with `resume` in `t.after`; `stop` resumes first.
   */
  pause (): void {
    this.process?.kill('SIGSTOP')
  }

  /** Lets a paused server run again (SIGCONT); it then answers what it was sent meanwhile. */
  resume (): void {
    this.process?.kill('SIGCONT')
  }

  /** Kills the server at once (SIGKILL), as a crash would. */
  async kill (): Promise<void> {
    await this.signal('SIGKILL')
  }

  async stop (): Promise<void> {
    // A stopped process keeps SIGTERM pending until it runs again.
    this.resume()
    await this.signal('SIGTERM')
    rmSync(this.directory, { recursive: true, force: true })
  }

  private async signal (signal: NodeJS.Signals): Promise<void> {
    const child = this.process
    this.process = undefined
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill(signal)
    await exited
  }
}
