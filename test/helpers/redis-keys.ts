import { once } from 'node:events'
import type { Cluster, Redis } from 'ioredis'

/**
 * Every key matching a pattern, by SCAN (never KEYS on a shared server). On a cluster each master holds its own
 * slots' keys, so every master is scanned.
 */
export async function scanKeys (client: Redis | Cluster, pattern: string): Promise<string[]> {
  const cluster = 'nodes' in client && typeof client.nodes === 'function' ? client : undefined
  // A cluster client knows its masters once it has read the slot map.
  if (cluster !== undefined && cluster.status !== 'ready') await once(cluster, 'ready')
  const nodes = cluster === undefined ? [client as Redis] : cluster.nodes('master')
  const found: string[] = []
  for (const node of nodes) {
    let cursor = '0'
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
      cursor = next
      found.push(...keys)
    } while (cursor !== '0')
  }
  return found
}
