import { percentile } from '../scenarios.js'

export interface Spread {
  count: number
  p50: number
  p99: number
  max: number
}

export function spread (values: readonly number[]): Spread {
  const sorted = Float64Array.from(values).sort()
  return { count: sorted.length, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted.at(-1) ?? Number.NaN }
}

/** Milliseconds, as few digits as they need. */
export function ms (value: number): string {
  if (Number.isNaN(value)) return '–'
  return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2)
}

export function spreadText (values: Spread): string {
  return `p50 ${ms(values.p50)} ms, p99 ${ms(values.p99)} ms, max ${ms(values.max)} ms`
}

export function mib (bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(0)} MiB`
}

export function seconds (milliseconds: number): string {
  return `${(milliseconds / 1000).toFixed(1)} s`
}
