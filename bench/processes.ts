import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

/** Every process the bench started and has not yet seen exit: the only ones it may stop. */
const started = new Set<Managed>()

/** The descriptor limit children get: as high as the hard limit allows, at most 65536. */
export const NOFILE = Math.min(65_536, Number(spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout.trim()) || 1024)

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

/** A process the bench started, pinned to a core; stopped by its PID only. */
export class Managed {
  constructor (readonly name: string, readonly child: ChildProcess, readonly port: number, readonly dir?: string) {
    started.add(this)
    child.once('exit', () => {
      started.delete(this)
      if (this.dir !== undefined) rmSync(this.dir, { recursive: true, force: true })
    })
  }

  get pid (): number {
    return this.child.pid as number
  }

  get running (): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  cpuSeconds (): number {
    return cpuSecondsOf(this.pid)
  }

  /** Write system calls (`syscw` of /proc/<pid>/io) so far: unlike CPU time, not inflated by a busy machine. */
  writeSyscalls (): number {
    return Number(/^syscw: (\d+)$/m.exec(readFileSync(`/proc/${this.pid}/io`, 'utf8'))?.[1] ?? Number.NaN)
  }

  /** Current (VmRSS) and peak (VmHWM) resident memory in bytes from /proc/<pid>/status. */
  memory (): { rss: number, peak: number } {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8')
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024
    return { rss: kib('VmRSS'), peak: kib('VmHWM') }
  }

  async stop (): Promise<void> {
    if (!this.running) return
    const exited = new Promise((resolve) => this.child.once('exit', resolve))
    signal(this.pid, 'SIGTERM')
    const timer = setTimeout(() => { if (this.running) signal(this.pid, 'SIGKILL') }, 5_000)
    await exited
    clearTimeout(timer)
  }
}

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100

/** A process's user+sys CPU seconds from /proc/<pid>/stat (fields 14 and 15, in clock ticks of 1/100 s). */
export function cpuSecondsOf (pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
}

/**
 * Busy (non-idle) CPU seconds of one core since boot, or of all cores together without `core`, from /proc/stat:
 * with the server's own CPU, shows interference.
 */
export function coreBusySeconds (core?: number): number {
  const line = new RegExp(`^cpu${core ?? ''} (.*)$`, 'm').exec(readFileSync('/proc/stat', 'utf8'))?.[1] ?? ''
  const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number)
  return ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0)) / CLOCK_TICKS
}

/** Stops every process the bench started (SIGTERM, SIGKILL after 5 s). */
export async function stopAll (): Promise<void> {
  await Promise.all([...started].map(async (managed) => await managed.stop()))
}

/** Last resort on exit: SIGKILL, by PID, whatever the bench started and is still running. */
export function killAllNow (): void {
  for (const managed of started) {
    if (managed.running) signal(managed.pid, 'SIGKILL')
    if (managed.dir !== undefined) rmSync(managed.dir, { recursive: true, force: true })
  }
}

function signal (pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name)
  } catch {}
}

/** Raises this process's descriptor limit to NOFILE (10k client sockets); children started later inherit it. */
export function raiseDescriptorLimit (): void {
  spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${NOFILE}:${NOFILE}`], { stdio: 'ignore' })
}

/** Raises this process's descriptor limit and pins all its threads to `core`. */
export function prepareLoadGenerator (core: number): void {
  raiseDescriptorLimit()
  spawnSync('taskset', ['-a', '-p', '-c', String(core), String(process.pid)], { stdio: 'ignore' })
}

/**
 * Starts `command` pinned to `core` with the raised descriptor limit (`prlimit` and `taskset` both exec, so
 * the child's PID is the command's), and waits until `ready` answers, 30 s at most.
 */
export async function startPinned (name: string, core: number, command: string[], env: Record<string, string>, port: number, ready: () => Promise<boolean>, dir?: string): Promise<Managed> {
  const child = spawn('prlimit', [`--nofile=${NOFILE}:${NOFILE}`, 'taskset', '-c', String(core), ...command], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe']
  })
  let errors = ''
  child.stderr?.on('data', (chunk: Buffer) => { if (errors.length < 8_000) errors += chunk.toString() })
  child.once('error', (error) => { errors += error.message })
  const managed = new Managed(name, child, port, dir)
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    if (!managed.running) throw new Error(`${name} exited (${String(child.exitCode ?? child.signalCode)}): ${errors.slice(0, 2_000)}`)
    if (await ready().catch(() => false)) return managed
    await sleep(100)
  }
  await managed.stop()
  throw new Error(`${name} did not become ready in 30 s: ${errors.slice(0, 2_000)}`)
}

export async function httpReady (port: number, path: string): Promise<boolean> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(1_000) })
  await response.body?.cancel()
  return response.ok
}

export async function startRedis (core: number): Promise<Managed> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'herald-bench-redis-'))
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--maxclients', String(NOFILE - 64)]
  return await startPinned('redis', core, ['redis-server', ...args], {}, port, async () => {
    return spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8', timeout: 2_000 }).stdout.trim() === 'PONG'
  }, dir)
}

/** The nchan module: Debian's path, or the one named in its modules-available snippet. */
export function nchanModule (): string | undefined {
  const candidates = ['/usr/lib/nginx/modules/ngx_nchan_module.so', '/usr/share/nginx/modules/ngx_nchan_module.so']
  const snippet = '/usr/share/nginx/modules-available/mod-nchan.conf'
  if (existsSync(snippet)) {
    const named = /load_module\s+([^;\s]+)/.exec(readFileSync(snippet, 'utf8'))?.[1]
    if (named !== undefined) candidates.unshift(named.startsWith('/') ? named : join('/usr/share/nginx', named))
  }
  const nginx = spawnSync('nginx', ['-v'])
  if (nginx.error !== undefined || nginx.status !== 0) return undefined
  return candidates.find((path) => existsSync(path))
}

export async function startNchan (core: number, templatePath: string, module: string): Promise<Managed> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'herald-bench-nchan-'))
  for (const sub of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, sub))
  const values: Record<string, string> = { MODULE: module, DIR: dir, PORT: String(port), NOFILE: String(NOFILE), CONNECTIONS: String(NOFILE - 64) }
  const conf = readFileSync(templatePath, 'utf8').replace(/\{\{(\w+)\}\}/g, (_, key: string) => values[key] ?? '')
  writeFileSync(join(dir, 'nginx.conf'), conf)
  // -e: the startup error log goes to the temp dir too, never /var/log.
  return await startPinned('nchan', core, ['nginx', '-e', join(dir, 'error.log'), '-p', dir, '-c', join(dir, 'nginx.conf')], {}, port, async () => await httpReady(port, '/health'), dir)
}

export function versionOf (command: string, args: string[]): string {
  const run = spawnSync(command, args, { encoding: 'utf8', timeout: 5_000 })
  if (run.error !== undefined) return 'not installed'
  return `${run.stdout ?? ''}${run.stderr ?? ''}`.trim().split('\n')[0] ?? 'unknown'
}

/** A Redis Cluster the bench started: its masters (no replicas), in the order of the slots they own. */
export interface StartedCluster {
  shards: Managed[]
  /** The first slot each shard owns, in the same order. */
  firstSlots: number[]
  /** For each of the 16,384 slots, the index in `shards` of its owner. */
  shardOfSlot: Uint8Array
}

/**
 * `masters` redis-servers with --cluster-enabled, pinned to `core`, joined by `redis-cli --cluster create` (no
 * replicas: the bench measures publishing, not failover), ready when every node says cluster_state:ok.
 */
export async function startRedisCluster (core: number, masters = 3): Promise<StartedCluster> {
  const shards: Managed[] = []
  try {
    while (shards.length < masters) {
      const port = await freePort()
      // The cluster bus listens on port + 10000: it must be a valid port, and not another node's.
      if (port > 55_000 || shards.some((other) => Math.abs(other.port - port) === 10_000)) continue
      const dir = mkdtempSync(join(tmpdir(), 'herald-bench-cluster-'))
      const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--maxclients', String(NOFILE - 64),
        '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '5000']
      shards.push(await startPinned(`redis-shard-${shards.length}`, core, ['redis-server', ...args], {}, port, async () => {
        return spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8', timeout: 2_000 }).stdout.trim() === 'PONG'
      }, dir))
    }
    const create = spawnSync('redis-cli', ['--cluster', 'create', ...shards.map((shard) => `127.0.0.1:${shard.port}`), '--cluster-replicas', '0', '--cluster-yes'],
      { encoding: 'utf8', timeout: 30_000 })
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${(create.stdout + create.stderr).slice(-1_000)}`)
    const deadline = Date.now() + 30_000
    const ok = (shard: Managed): boolean => spawnSync('redis-cli', ['-p', String(shard.port), 'cluster', 'info'], { encoding: 'utf8', timeout: 2_000 }).stdout.includes('cluster_state:ok')
    while (!shards.every(ok)) {
      if (Date.now() > deadline) throw new Error('the bench cluster did not reach cluster_state:ok in 30 s')
      await sleep(100)
    }
    const owners = new Map<number, number>()
    const shardOfSlot = new Uint8Array(16_384)
    const nodes = spawnSync('redis-cli', ['-p', String(shards[0]?.port), 'cluster', 'nodes'], { encoding: 'utf8', timeout: 2_000 }).stdout
    for (const line of nodes.trim().split('\n')) {
      const [, address = '', flags = '', , , , , , ...slots] = line.trim().split(' ')
      if (!flags.includes('master')) continue
      const index = shards.findIndex((shard) => address.startsWith(`127.0.0.1:${shard.port}@`))
      for (const range of slots) {
        const [first = 0, last = first] = range.split('-').map(Number)
        owners.set(index, Math.min(owners.get(index) ?? first, first))
        shardOfSlot.fill(index, first, last + 1)
      }
    }
    // Shards in slot order, so "shard 0" names the same slots in every run.
    const order = [...owners.entries()].sort((a, b) => a[1] - b[1]).map(([index]) => index)
    if (order.length !== masters) throw new Error(`expected ${masters} masters with slots, CLUSTER NODES shows ${order.length}`)
    const renumber = new Uint8Array(masters)
    for (const [position, index] of order.entries()) renumber[index] = position
    for (let slot = 0; slot < shardOfSlot.length; slot++) shardOfSlot[slot] = renumber[shardOfSlot[slot] as number] as number
    return { shards: order.map((index) => shards[index] as Managed), firstSlots: order.map((index) => owners.get(index) as number), shardOfSlot }
  } catch (error) {
    await Promise.all(shards.map(async (shard) => await shard.stop()))
    throw error
  }
}
