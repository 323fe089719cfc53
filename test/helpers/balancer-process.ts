import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { until } from '../helper.js'
import { stopChild } from './child-process.js'
import { freePort } from './redis-server.js'

export type BalancerKind = 'nginx' | 'haproxy' | 'caddy'

/** The config each balancer runs, as the README shows it. */
export const CONFIG_FILES: Record<BalancerKind, string> = {
  nginx: 'deploy/nginx.conf',
  haproxy: 'deploy/haproxy.cfg',
  caddy: 'deploy/Caddyfile'
}

const COMMANDS: Record<BalancerKind, [string, string[]]> = {
  nginx: ['nginx', ['-v']],
  haproxy: ['haproxy', ['-v']],
  caddy: ['caddy', ['version']]
}

/** Why a balancer cannot run here (not installed), or undefined when it can. */
export function missing (kind: BalancerKind): string | undefined {
  const [command, args] = COMMANDS[kind]
  const probe = spawnSync(command, args, { encoding: 'utf8' })
  if (probe.error === undefined && probe.status === 0) return undefined
  return `${command} is not installed: apt-get install -y ${command} (.ci/run does it for you)`
}

/** A deploy/ file with its {{NAME}} placeholders filled in; an unknown placeholder is an error, not a blank. */
export function fillConfig (kind: BalancerKind, values: Record<string, string>, text = readFileSync(CONFIG_FILES[kind], 'utf8')): string {
  return text.replace(/\{\{(\w+)\}\}/g, (_, key: string) => {
    const value = values[key]
    if (value === undefined) throw new Error(`${CONFIG_FILES[kind]}: no value for {{${key}}}`)
    return value
  })
}

/** The same deploy/ file checked by the balancer itself (`nginx -t`, `haproxy -c`, `caddy validate`). */
export function validate (kind: BalancerKind, upstreams: [string, string]): { ok: boolean, output: string } {
  const dir = mkdtempSync(join(tmpdir(), `herald-${kind}-check-`))
  try {
    const { command, args, env } = prepare(kind, dir, '127.0.0.1:1', upstreams)
    // nginx -t, haproxy -c (in place of -db), caddy validate (in place of run).
    const checkArgs = { nginx: ['-t', ...args], haproxy: ['-c', ...args.slice(1)], caddy: ['validate', ...args.slice(1)] }[kind]
    const run = spawnSync(command, checkArgs, { cwd: dir, encoding: 'utf8', env })
    return { ok: run.status === 0, output: `${run.stdout ?? ''}${run.stderr ?? ''}` }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * Writes what a balancer needs into `dir` around the deploy/ file: for nginx a main config (temp paths under the
 * prefix) that includes it, for Caddy a global block (no admin endpoint, so runs do not collide; bound to the listen
 * address, not every interface) that imports it.
 */
function prepare (kind: BalancerKind, dir: string, listen: string, upstreams: [string, string], text?: string): { command: string, args: string[], env: NodeJS.ProcessEnv } {
  // Caddy's site: any Host on the port (as nginx and HAProxy answer), bound to loopback by default_bind below.
  const values = { HERALD_1: upstreams[0], HERALD_2: upstreams[1], LISTEN: listen, SITE: `http://:${listen.slice(listen.lastIndexOf(':') + 1)}` }
  if (kind === 'nginx') {
    for (const sub of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, sub))
    writeFileSync(join(dir, 'herald.conf'), fillConfig(kind, values, text))
    writeFileSync(join(dir, 'nginx.conf'), [
      'worker_processes 1;',
      'events { worker_connections 4096; }',
      'http {',
      '  access_log off;',
      ...['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((sub) => `  ${sub === 'body' ? 'client_body' : sub}_temp_path ${join(dir, sub)};`),
      `  include ${join(dir, 'herald.conf')};`,
      '}',
      ''
    ].join('\n'))
    const globals = `daemon off; master_process off; pid ${join(dir, 'nginx.pid')}; error_log ${join(dir, 'error.log')};`
    // -e: the log of the start itself goes to the temp dir too, never /var/log.
    return { command: 'nginx', args: ['-e', join(dir, 'error.log'), '-p', dir, '-c', join(dir, 'nginx.conf'), '-g', globals], env: process.env }
  }
  if (kind === 'haproxy') {
    writeFileSync(join(dir, 'haproxy.cfg'), fillConfig(kind, values, text))
    return { command: 'haproxy', args: ['-db', '-f', join(dir, 'haproxy.cfg')], env: process.env }
  }
  writeFileSync(join(dir, 'herald.caddy'), fillConfig(kind, values, text))
  writeFileSync(join(dir, 'Caddyfile'), `{\n\tadmin off\n\tdefault_bind ${listen.slice(0, listen.lastIndexOf(':'))}\n}\n\nimport ${join(dir, 'herald.caddy')}\n`)
  // Caddy keeps state under HOME/XDG dirs: the temp dir, not the user's.
  const env = { ...process.env, HOME: dir, XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir }
  return { command: 'caddy', args: ['run', '--config', join(dir, 'Caddyfile'), '--adapter', 'caddyfile'], env }
}

/** A real nginx, HAProxy or Caddy the test owns, on a free loopback port, in its own temp dir, stopped by PID. */
export class BalancerProcess {
  private constructor (readonly kind: BalancerKind, private readonly child: ChildProcess, readonly port: number, readonly dir: string, readonly output: () => string) {}

  /** Starts the balancer on deploy/'s config (or `text`, a variant of it) in front of two instances. */
  static async start (kind: BalancerKind, upstreams: [string, string], text?: string): Promise<BalancerProcess> {
    const port = await freePort()
    const dir = mkdtempSync(join(tmpdir(), `herald-${kind}-`))
    const { command, args, env } = prepare(kind, dir, `127.0.0.1:${port}`, upstreams, text)
    const child = spawn(command, args, { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString() })
    const balancer = new BalancerProcess(kind, child, port, dir, () => output)
    try {
      await until(async () => {
        if (child.exitCode !== null) throw new Error(`${kind} exited with ${child.exitCode}: ${output}${balancer.errorLog()}`)
        try {
          return (await fetch(`${balancer.url}/health`)).ok
        } catch {
          return false
        }
      }, 10_000, `${kind} to answer /health`)
    } catch (error) {
      await balancer.stop()
      throw error
    }
    return balancer
  }

  get url (): string {
    return `http://127.0.0.1:${this.port}`
  }

  /** nginx's error log (upstream failures are logged there); empty for the others, which log to stderr. */
  errorLog (): string {
    try {
      return readFileSync(join(this.dir, 'error.log'), 'utf8')
    } catch {
      return ''
    }
  }

  async stop (): Promise<void> {
    await stopChild(this.child, this.dir)
  }
}
