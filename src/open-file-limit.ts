import { readFileSync } from 'node:fs'

/** Descriptors kept back from the socket cap for what else the process opens: Redis connections, files, the listener. */
export const DESCRIPTOR_RESERVE = 64

/** The open-file limit in force ("Max open files", soft) in the text of /proc/<pid>/limits; undefined when unlimited or absent. */
export function openFileLimit (limits: string): number | undefined {
  const soft = /^Max open files\s+(\d+|unlimited)\s/m.exec(limits)?.[1]
  return soft === undefined || soft === 'unlimited' ? undefined : Number(soft)
}

/** This process's open-file limit (Node raises the soft limit to the hard one at start); undefined off Linux. */
export function processOpenFileLimit (): number | undefined {
  try {
    return openFileLimit(readFileSync('/proc/self/limits', 'utf8'))
  } catch {
    return undefined
  }
}

/**
 * The socket cap to enforce: HERALD_MAX_SOCKETS, or less when that would not leave DESCRIPTOR_RESERVE descriptors
 * below the open-file limit. Past the limit the kernel refuses new descriptors and Node closes new connections
 * silently; below it, the cap closes them and says so.
 */
export function socketCap (maxSockets: number, limit: number | undefined): number {
  return limit === undefined ? maxSockets : Math.max(1, Math.min(maxSockets, limit - DESCRIPTOR_RESERVE))
}
