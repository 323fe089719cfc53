import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { coreBusySeconds, cpuSecondsOf } from '../processes.js'

/** The kernel's page size: /proc/net/sockstat and tcp_mem count pages. */
export const PAGE_BYTES = Number(spawnSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }).stdout.trim()) || 4096

/**
 * ESTABLISHED TCP connections on loopback whose server side is `port` (from `ss`): the server's sockets (`side`
 * server) or the clients' (`side` client). `peer` narrows them to one client network such as 127.0.1.0/24.
 */
export function establishedSockets (port: number, side: 'server' | 'client', peer?: string): number {
  const own = side === 'server' ? `sport = :${port}` : `dport = :${port}`
  const from = peer === undefined ? '' : side === 'server' ? ` and dst ${peer}` : ` and src ${peer}`
  const run = spawnSync('ss', ['-Htn', 'state', 'established', `( ${own}${from} )`], { encoding: 'utf8', timeout: 10_000, maxBuffer: 64 * 2 ** 20 })
  if (run.status !== 0) throw new Error(`ss failed: ${run.stderr ?? run.error?.message ?? ''}`)
  return run.stdout.split('\n').filter((line) => line.trim() !== '').length
}

/** Pages of memory all TCP sockets of the host hold now (`TCP: … mem` in /proc/net/sockstat; the count is host-wide). */
export function tcpMemoryPages (): number {
  const match = /^TCP:.* mem (\d+)/m.exec(readFileSync('/proc/net/sockstat', 'utf8'))
  if (match === null) throw new Error('no TCP mem line in /proc/net/sockstat')
  return Number(match[1])
}

function numbers (path: string): number[] {
  return readFileSync(path, 'utf8').trim().split(/\s+/).map(Number)
}

/** The host's TCP memory thresholds in pages: below `low` no regulation, past `pressure` pressure mode, `hard` the limit. */
export function tcpMemoryLimits (): { low: number, pressure: number, hard: number } {
  const [low = 0, pressure = 0, hard = 0] = numbers('/proc/sys/net/ipv4/tcp_mem')
  return { low, pressure, hard }
}

/** The most a socket's kernel send buffer grows to (tcp_wmem max) and a receive buffer's start (tcp_rmem default), in bytes. */
export function socketBufferSizes (): { sendMax: number, receiveDefault: number } {
  return { sendMax: numbers('/proc/sys/net/ipv4/tcp_wmem')[2] ?? 0, receiveDefault: numbers('/proc/sys/net/ipv4/tcp_rmem')[1] ?? 0 }
}

/**
 * How many never-reading loopback connections fit in `share` of the host's no-pressure TCP memory (tcp_mem low),
 * counting what is in use now and, per connection, tcp_wmem max + tcp_rmem default: on loopback (64 KB MSS) the
 * kernel grows a send buffer to tcp_wmem max at once, and Node cannot set SO_SNDBUF. The count is host-wide.
 */
export function neverReaderRoom (share: number): number {
  const { sendMax, receiveDefault } = socketBufferSizes()
  return Math.max(0, Math.floor(((share * tcpMemoryLimits().low - tcpMemoryPages()) * PAGE_BYTES) / (sendMax + receiveDefault)))
}

/** The host's load averages (1, 5, 15 min), as `uptime` shows them: the machine is shared. */
export function loadAverage (): string {
  return loadavg().map((value) => value.toFixed(2)).join(' ')
}

/**
 * Starts measuring CPU. The function it returns gives, since the start, each named process's use in cores (1 = one
 * core busy), this process's (`this process`), and `other processes`: what the rest of the machine used (it is
 * shared), from /proc/stat's busy time of all cores.
 */
export function cpuMeter (pids: Record<string, number | undefined>): () => Record<string, number> {
  const started = performance.now()
  const named = Object.entries(pids).filter((entry): entry is [string, number] => entry[1] !== undefined)
  const before = named.map(([, pid]) => cpuSecondsOf(pid))
  const self = process.cpuUsage()
  const busy = coreBusySeconds()
  return () => {
    const elapsed = (performance.now() - started) / 1000
    const cores: Record<string, number> = {}
    let ours = 0
    for (const [index, [name, pid]] of named.entries()) {
      let used = 0
      try {
        used = cpuSecondsOf(pid) - (before[index] as number)
      } catch {}
      ours += used
      cores[name] = used / elapsed
    }
    const mine = process.cpuUsage(self)
    ours += (mine.user + mine.system) / 1e6
    cores['this process'] = (mine.user + mine.system) / 1e6 / elapsed
    cores['other processes'] = Math.max(0, coreBusySeconds() - busy - ours) / elapsed
    return cores
  }
}

/** CPU use as `name 0.95` pairs, in cores. */
export function cpuText (cores: Record<string, number>): string {
  return Object.entries(cores).map(([name, used]) => `${name} ${used.toFixed(2)}`).join(', ') + ' cores'
}
