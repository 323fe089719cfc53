import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { until } from '../helper.js'
import { stopChild } from './child-process.js'
import { freePort } from './redis-server.js'

/** Why Prometheus cannot run here (not installed), or undefined when it can. */
export function missingPrometheus (): string | undefined {
  const probe = spawnSync('prometheus', ['--version'], { encoding: 'utf8' })
  if (probe.error === undefined && probe.status === 0) return undefined
  return 'prometheus is not installed: apt-get install -y prometheus (.ci/run does it for you)'
}

/** One series of an instant query's answer. */
export interface Sample { metric: Record<string, string>, value: number }

/** A real Prometheus the test owns: a config it is given, a free loopback port, its own data directory, stopped by PID. */
export class PrometheusProcess {
  private constructor (private readonly child: ChildProcess, readonly port: number, private readonly dir: string, readonly output: () => string) {}

  static async start (config: string): Promise<PrometheusProcess> {
    const port = await freePort()
    const dir = mkdtempSync(join(tmpdir(), 'herald-prometheus-'))
    writeFileSync(join(dir, 'prometheus.yml'), config)
    const child = spawn('prometheus', [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn'
    ], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString() })
    const prometheus = new PrometheusProcess(child, port, dir, () => output)
    try {
      await until(async () => {
        if (child.exitCode !== null) throw new Error(`prometheus exited with ${child.exitCode}: ${output}`)
        try {
          return (await fetch(`${prometheus.url}/-/ready`)).ok
        } catch {
          return false
        }
      }, 20_000, 'prometheus to be ready')
    } catch (error) {
      await prometheus.stop()
      throw error
    }
    return prometheus
  }

  get url (): string {
    return `http://127.0.0.1:${this.port}`
  }

  /** An instant query; throws with Prometheus's own message when the expression is not valid PromQL. */
  async query (expr: string): Promise<Sample[]> {
    const response = await fetch(`${this.url}/api/v1/query?query=${encodeURIComponent(expr)}`)
    const body = await response.json() as { status: string, error?: string, data?: { resultType: string, result: Array<{ metric: Record<string, string>, value: [number, string] }> } }
    if (body.status !== 'success' || body.data === undefined) throw new Error(`${expr}: ${body.error ?? response.status}`)
    if (body.data.resultType === 'scalar') return [{ metric: {}, value: Number((body.data.result as unknown as [number, string])[1]) }]
    return body.data.result.map(({ metric, value }) => ({ metric, value: Number(value[1]) }))
  }

  /** The scrape targets' health, by scraped address. */
  async targets (): Promise<Record<string, string>> {
    const body = await (await fetch(`${this.url}/api/v1/targets`)).json() as { data: { activeTargets: Array<{ scrapeUrl: string, health: string, lastError: string }> } }
    return Object.fromEntries(body.data.activeTargets.map((target) => [new URL(target.scrapeUrl).host, target.health]))
  }

  async stop (): Promise<void> {
    await stopChild(this.child, this.dir)
  }
}
