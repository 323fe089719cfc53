/** How Herald reaches Redis: one server, a Sentinel-managed master, or a Redis Cluster. */
export type RedisMode = 'standalone' | 'sentinel' | 'cluster'

/** HERALD_REDIS_MODE: a mode, or `auto` (from the URL's scheme, then INFO cluster at start). */
export type RedisModeSetting = RedisMode | 'auto'

export interface SentinelAddress {
  /** The sentinels to ask, host and port each. */
  sentinels: Array<{ host: string, port: number }>
  /** The name the sentinels monitor the master under. */
  masterName: string
  username?: string
  password?: string
}

export const SENTINEL_SCHEME = 'redis+sentinel:'

/**
 * Reads `redis+sentinel://[user:password@]host1:port1,host2:port2/masterName`. Throws with what is wrong.
 * The credentials are the master's and replicas' (the sentinels themselves are asked without any).
 */
export function parseSentinelUrl (text: string): SentinelAddress {
  const match = /^redis\+sentinel:\/\/(?:([^@/]*)@)?([^/@]+)\/([^/?#]+)\/?$/.exec(text)
  if (match === null) throw new Error('expected redis+sentinel://[user:password@]host:port[,host:port…]/<master name>')
  const [, credentials, hosts = '', masterName = ''] = match
  const sentinels = hosts.split(',').map((entry) => {
    const address = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]+):(\d{1,5})$/.exec(entry.trim())
    const [, host = '', port = ''] = address ?? []
    if (address === null || Number(port) > 65_535) throw new Error(`expected host:port for each sentinel, got ${JSON.stringify(entry)}`)
    return { host: host.replace(/^\[|\]$/g, ''), port: Number(port) }
  })
  const parsed: SentinelAddress = { sentinels, masterName: decodeURIComponent(masterName) }
  if (credentials !== undefined) {
    const colon = credentials.indexOf(':')
    const username = decodeURIComponent(colon === -1 ? credentials : credentials.slice(0, colon))
    if (username !== '') parsed.username = username
    if (colon !== -1) parsed.password = decodeURIComponent(credentials.slice(colon + 1))
  }
  return parsed
}

/** The mode the URL and the setting fix before asking Redis anything; undefined when INFO cluster must tell. */
export function modeFromSettings (url: string, setting: RedisModeSetting): RedisMode | undefined {
  if (url.startsWith(SENTINEL_SCHEME)) return 'sentinel'
  return setting === 'auto' ? undefined : setting
}

/** Why the URL and HERALD_REDIS_MODE do not go together; undefined when they do. */
export function modeProblem (url: string, setting: RedisModeSetting): string | undefined {
  const sentinelUrl = url.startsWith(SENTINEL_SCHEME)
  if (setting === 'sentinel' && !sentinelUrl) return 'HERALD_REDIS_MODE=sentinel: expected a redis+sentinel:// REDIS_URL that lists the sentinels and the master name'
  if (sentinelUrl && setting !== 'auto' && setting !== 'sentinel') return `HERALD_REDIS_MODE=${setting}: a redis+sentinel:// REDIS_URL is Sentinel mode`
  return undefined
}

/** True when INFO (or INFO cluster) text says the server runs in cluster mode. */
export function clusterEnabled (info: string): boolean {
  return /^cluster_enabled:1\r?$/m.test(info)
}

/** The run_id field of INFO server text: a new value for every redis-server process. */
export function runIdOf (info: string): string | undefined {
  return /^run_id:([0-9a-f]+)\r?$/m.exec(info)?.[1]
}

/** The Redis Cluster slot of a key: CRC16 (XMODEM) of its hash tag (the text in the first non-empty {…}), mod 16384. */
export function keySlot (key: string): number {
  let bytes = Buffer.from(key)
  const open = bytes.indexOf(0x7b)
  if (open !== -1) {
    const close = bytes.indexOf(0x7d, open + 1)
    if (close > open + 1) bytes = bytes.subarray(open + 1, close)
  }
  let crc = 0
  for (const byte of bytes) {
    crc ^= byte << 8
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  }
  return crc % 16_384
}
