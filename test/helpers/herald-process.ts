import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { until } from '../helper.js'
import { freePort } from './redis-server.js'

/** Herald as its own OS process (`node --import tsx src/server.ts`), as compose or a host would run it. */
export class HeraldProcess {
  private constructor (private readonly child: ChildProcess, readonly port: number, readonly output: () => string) {}

  /**
   * Starts on a free port, or on `env.PORT` (to start an instance again where it was). `openFiles` sets the
   * process's open-file limit (soft and hard, with prlimit, which runs it under the same PID).
   */
  static async start (env: Record<string, string>, openFiles?: number): Promise<HeraldProcess> {
    const port = env.PORT !== undefined ? Number(env.PORT) : await freePort()
    const node = [process.execPath, '--import', 'tsx', 'src/server.ts']
    const command = openFiles === undefined ? node : ['prlimit', `--nofile=${openFiles}:${openFiles}`, ...node]
    const child = spawn(command[0] as string, command.slice(1), {
      // Metrics on a free port (several instances share the host); SIGTERM drains only when a test asks for it.
      env: { ...process.env, HOST: '127.0.0.1', LOG_LEVEL: 'warn', HERALD_METRICS_PORT: '0', HERALD_DRAIN_MS: '0', ...env, PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let output = ''
    child.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString() })
    const herald = new HeraldProcess(child, port, () => output)
    try {
      await until(async () => {
        if (child.exitCode !== null) throw new Error(`herald exited with ${child.exitCode}: ${output}`)
        try {
          return (await fetch(`${herald.url}/health`)).ok
        } catch {
          return false
        }
      }, 90_000, 'herald to answer /health')
    } catch (error) {
      // A process that never became healthy is still ours to stop.
      await herald.kill()
      throw error
    }
    return herald
  }

  /**
   * Runs Herald until it exits by itself (a start-up that must fail), at most `timeoutMs`; what it wrote to
   * stdout and stderr, its exit code, and how long it ran.
   */
  static async run (env: Record<string, string>, timeoutMs = 150_000): Promise<{ code: number | null, signal: NodeJS.Signals | null, output: string, ms: number }> {
    const startedAt = performance.now()
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
      env: { ...process.env, HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'warn', HERALD_METRICS_PORT: '0', ...env },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('close', (code, signal) => resolve([code, signal])))
    clearTimeout(timer)
    return { code, signal, output, ms: performance.now() - startedAt }
  }

  get pid (): number | undefined {
    return this.child.pid
  }

  /** Resident memory of the process now, from /proc. */
  rssBytes (): number {
    return this.statusBytes('VmRSS')
  }

  /** The most resident memory the process has had (its high-water mark), from /proc. */
  peakRssBytes (): number {
    return this.statusBytes('VmHWM')
  }

  private statusBytes (field: 'VmRSS' | 'VmHWM'): number {
    const status = readFileSync(`/proc/${this.child.pid}/status`, 'utf8')
    return Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024
  }

  get url (): string {
    return `http://127.0.0.1:${this.port}`
  }

  /** SIGKILL: the process dies without closing anything, as in a crash. */
  async kill (signal: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode
    const exited = new Promise<number | null>((resolve) => this.child.once('exit', (code) => resolve(code)))
    this.child.kill(signal)
    return await exited
  }
}
