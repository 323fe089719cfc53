import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync, existsSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from '../test/helpers/redis-server.js'

export { freePort }

/** A process the bench started, pinned to a core; stopped by PID only. */
export class Managed {
  constructor (readonly name: string, readonly child: ChildProcess, readonly port: number) {}

  get pid (): number {
    return this.child.pid as number
  }

  /** user+sys CPU seconds from /proc/<pid>/stat. */
  cpuSeconds (): number {
    const fields = readFileSync(`/proc/${this.pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
    return (Number(fields[11]) + Number(fields[12])) / 100
  }

  /** [current RSS, peak RSS] in bytes from /proc/<pid>/status. */
  memory (): { rss: number, peak: number } {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8')
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024
    return { rss: kib('VmRSS'), peak: kib('VmHWM') }
  }

  async stop (): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    const exited = new Promise((resolve) => this.child.once('exit', resolve))
    this.child.kill('SIGTERM')
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000)
    await exited
    clearTimeout(timer)
  }
}

/** Starts `command` pinned to `core` with a raised descriptor limit, and waits until `ready` answers. */
export async function startPinned (name: string, core: number, command: string[], env: Record<string, string>, port: number, ready: () => Promise<boolean>): Promise<Managed> {
  const child = spawn('taskset', ['-c', String(core), ...command], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] })
  let errors = ''
  child.stderr?.on('data', (chunk: Buffer) => { errors += chunk.toString() })
  const managed = new Managed(name, child, port)
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}: ${errors.slice(0, 2000)}`)
    if (await ready().catch(() => false)) return managed
    await sleep(100)
  }
  await managed.stop()
  throw new Error(`${name} did not become ready: ${errors.slice(0, 2000)}`)
}

export async function httpReady (port: number, path: string): Promise<boolean> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(1_000) })
  return response.ok
}

export async function startRedis (core: number): Promise<Managed> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'herald-bench-redis-'))
  return await startPinned('redis', core, ['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--maxclients', '20000'], {}, port, async () => {
    return spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout.trim() === 'PONG'
  })
}

export const NCHAN_MODULE = '/usr/lib/nginx/modules/ngx_nchan_module.so'

export function nchanAvailable (): boolean {
  return existsSync(NCHAN_MODULE) && spawnSync('nginx', ['-v']).status === 0
}

export async function startNchan (core: number, templatePath: string): Promise<Managed> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'herald-bench-nchan-'))
  for (const sub of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, sub))
  const conf = readFileSync(templatePath, 'utf8').replaceAll('{{MODULE}}', NCHAN_MODULE).replaceAll('{{DIR}}', dir).replaceAll('{{PORT}}', String(port))
  writeFileSync(join(dir, 'nginx.conf'), conf)
  return await startPinned('nchan', core, ['nginx', '-p', dir, '-c', join(dir, 'nginx.conf')], {}, port, async () => await httpReady(port, '/health'))
}

export function versionOf (command: string, args: string[]): string {
  const run = spawnSync(command, args, { encoding: 'utf8' })
  return `${run.stdout ?? ''}${run.stderr ?? ''}`.trim().split('\n')[0] ?? 'unknown'
}
