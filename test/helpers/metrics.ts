import type { FastifyInstance } from 'fastify'

/** One scrape of an instance's /metrics listener, parsed: `value(name, labels)` reads a sample. */
export interface Scrape {
  text: string
  /** The sample's value; undefined when no such series was exported. */
  value: (name: string, labels?: Record<string, string>) => number | undefined
}

/** Fetches and parses /metrics from a port (a process) or an app started by `build()`. */
export async function scrape (from: FastifyInstance | number): Promise<Scrape> {
  const port = typeof from === 'number' ? from : from.metrics.address()?.port
  if (port === undefined) throw new Error('metrics are not served (HERALD_METRICS_PORT=off)')
  const response = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) })
  if (!response.ok) throw new Error(`/metrics answered ${response.status}`)
  const text = await response.text()
  const samples = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$/.exec(line)
    if (match === null) throw new Error(`not a Prometheus sample line: ${line}`)
    samples.set(key(match[1] as string, parseLabels(match[2] ?? '')), Number(match[3]))
  }
  return { text, value: (name, labels = {}) => samples.get(key(name, labels)) }
}

function parseLabels (text: string): Record<string, string> {
  const labels: Record<string, string> = {}
  for (const [, name, value] of text.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[name as string] = value as string
  return labels
}

function key (name: string, labels: Record<string, string>): string {
  return `${name}{${Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)).map(([label, value]) => `${label}=${value}`).join(',')}}`
}
