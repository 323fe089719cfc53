import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { freePort, httpReady, type Managed, nchanModule, startNchan, startPinned, startRedis, startRedisCluster } from './processes.js'

export const root = fileURLToPath(new URL('..', import.meta.url))
export const SERVER_CORE = 0
export const LOAD_CORE = 1

export type SystemName = 'herald-memory' | 'herald-redis' | 'herald-cluster' | 'seed' | 'nchan'
export const SYSTEM_NAMES: SystemName[] = ['herald-memory', 'herald-redis', 'herald-cluster', 'seed', 'nchan']
/** The systems a run measures when `--systems` is not given: herald-cluster only joins for the scenarios that need it. */
export const DEFAULT_SYSTEMS: SystemName[] = ['herald-memory', 'herald-redis', 'seed', 'nchan']

export interface Running {
  server: Managed
  redis?: Managed
  /** herald-cluster: the masters, in the order of their slots (shard 0 owns slot 0). */
  shards?: Managed[]
  /** herald-cluster: for each hash slot, the index in `shards` of its owner. */
  shardOfSlot?: Uint8Array
  /** The Redis a publisher outside Herald calls the Function library on (herald-redis). */
  redisPort?: number
  /** Herald's metrics listener, scraped after each run (bench/results/<file>.metrics.txt). */
  metricsPort?: number
}

/** One server under test: how to start it, where to subscribe, how to publish. */
export interface System {
  name: SystemName
  start: () => Promise<Running>
  streamPath: (topic: string) => string
  publishRequest: (topic: string, data: unknown) => { path: string, body: string }
  /** Herald only: many events in one request (POST /v1/events/batch). */
  publishBatchRequest?: (events: Array<{ topic: string, data: unknown }>) => { path: string, body: string }
  /** For idle streams: true once the server side of `count` streams is fully set up (default: at once). */
  idleReady?: (running: Running, count: number) => boolean
  /** Why the system cannot run here (e.g. not installed), with how to fix it. */
  unavailable?: string
}

/** Extra environment for Herald (one place: auth or dev-mode flags go here). */
export const heraldEnv: Record<string, string> = {
  LOG_LEVEL: 'warn',
  HERALD_MAX_CONNECTIONS: '20000',
  // Every load client comes from 127.0.0.1: the per-address cap (an honest page's guard) would refuse them.
  HERALD_MAX_STREAMS_PER_ADDRESS: '0',
  HERALD_RATE_LIMIT_PER_MINUTE: '0',
  // Several instances on one host: each its own free metrics port.
  HERALD_METRICS_PORT: '0',
  // Stopped after each run's window, with no stream left to drain: SIGTERM would otherwise wait the 5 s drain window.
  HERALD_DRAIN_MS: '0'
}

/** Herald's key prefix in the bench (the default): the Function library is then `herald_v1`. */
export const HERALD_PREFIX = 'herald:'

function herald (name: 'herald-memory' | 'herald-redis' | 'herald-cluster'): System {
  return {
    name,
    start: async () => {
      const redis = name === 'herald-redis' ? await startRedis(LOAD_CORE) : undefined
      const cluster = name === 'herald-cluster' ? await startRedisCluster(LOAD_CORE) : undefined
      try {
        const port = await freePort()
        const metricsPort = await freePort()
        const env: Record<string, string> = { ...heraldEnv, HOST: '127.0.0.1', PORT: String(port), HERALD_METRICS_PORT: String(metricsPort) }
        const redisPort = redis?.port ?? cluster?.shards[0]?.port
        // Any node's URL: Herald detects the cluster itself.
        if (redisPort !== undefined) env.REDIS_URL = `redis://127.0.0.1:${redisPort}`
        const server = await startPinned(name, SERVER_CORE, [process.execPath, 'dist/src/server.js'], env, port, async () => await httpReady(port, '/health/ready'))
        const running: Running = { server, metricsPort }
        if (redis !== undefined) running.redis = redis
        if (cluster !== undefined) {
          running.shards = cluster.shards
          running.shardOfSlot = cluster.shardOfSlot
        }
        if (redisPort !== undefined) running.redisPort = redisPort
        return running
      } catch (error) {
        await redis?.stop()
        await Promise.all((cluster?.shards ?? []).map(async (shard) => await shard.stop()))
        throw error
      }
    },
    streamPath: (topic) => `/v1/stream?topic=${encodeURIComponent(topic)}`,
    publishRequest: (topic, data) => ({ path: '/v1/events', body: JSON.stringify({ topic, data }) }),
    publishBatchRequest: (events) => ({ path: '/v1/events/batch', body: JSON.stringify({ events }) })
  }
}

/** Every Redis process of a run (one Redis, or each shard of a cluster). */
export function redisProcesses (running: Running): Managed[] {
  return running.redis !== undefined ? [running.redis] : running.shards ?? []
}

/** CPU seconds of each Redis process of a run, in shard order. */
export function redisCpuEach (running: Running): number[] {
  return redisProcesses(running).map((redis) => redis.cpuSeconds())
}

/** Stops every process of a run: the server, then its Redis. */
export async function stopRunning (running: Running): Promise<void> {
  await running.server.stop()
  await Promise.all(redisProcesses(running).map(async (redis) => await redis.stop()))
}

const seed: System = {
  name: 'seed',
  start: async () => {
    const redis = await startRedis(LOAD_CORE)
    try {
      const port = await freePort()
      const server = await startPinned('seed', SERVER_CORE, [process.execPath, '--import', 'tsx', 'bench/baselines/seed-recipe.ts'],
        { PORT: String(port), REDIS_URL: `redis://127.0.0.1:${redis.port}` }, port, async () => await httpReady(port, '/health'))
      return { server, redis }
    } catch (error) {
      await redis.stop()
      throw error
    }
  },
  streamPath: (topic) => `/stream?topic=${encodeURIComponent(topic)}`,
  publishRequest: (topic, data) => ({ path: '/post', body: JSON.stringify({ topic, data }) }),
  // Each stream's own Redis connection is opened after its headers went out: count them in Redis.
  idleReady: (running, count) => {
    const info = spawnSync('redis-cli', ['-p', String(running.redis?.port), 'info', 'clients'], { encoding: 'utf8', timeout: 2_000 }).stdout ?? ''
    return Number(/connected_clients:(\d+)/.exec(info)?.[1] ?? 0) >= count
  }
}

function nchan (): System {
  const module = nchanModule()
  const system: System = {
    name: 'nchan',
    start: async () => ({ server: await startNchan(SERVER_CORE, `${root}bench/baselines/nchan/nginx.conf.template`, module as string) }),
    streamPath: (topic) => `/sub?topic=${encodeURIComponent(topic)}`,
    publishRequest: (topic, data) => ({ path: `/pub?topic=${encodeURIComponent(topic)}`, body: JSON.stringify(data) })
  }
  if (module === undefined) system.unavailable = 'nginx or its nchan module is not installed: `apt-get install -y nginx libnginx-mod-nchan`'
  return system
}

export function systems (): Record<SystemName, System> {
  return { 'herald-memory': herald('herald-memory'), 'herald-redis': herald('herald-redis'), 'herald-cluster': herald('herald-cluster'), seed, nchan: nchan() }
}
