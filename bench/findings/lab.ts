import { HeraldProcess } from '../../test/helpers/herald-process.js'
import { RedisServer, type RedisServerOptions } from '../../test/helpers/redis-server.js'

/** What one finding measured: the figures (one line, printed and in the table) and the details for the report. */
export interface Measured {
  figures: string
  details: string[]
}

/** One finding of issue 9, as it was reported before the fixes, and how to measure it now. */
export interface Finding {
  number: number
  title: string
  /** The figure the issue reported before the fixes. */
  before: string
  /** Seconds the measurement may take; past that it is stopped and reported as failed. */
  limitSeconds: number
  measure: (lab: Lab) => Promise<Measured>
}

/** Every process any lab started and has not stopped: killed by PID if the run dies. */
const alive = new Set<{ readonly pid: number | undefined }>()

/**
 * The processes and connections one finding started, all stopped when it ends, last first, whatever happened:
 * real redis-server and Herald processes on loopback, and whatever else it hands to `defer`.
 */
export class Lab {
  private readonly closers: Array<() => unknown> = []

  async redis (options?: RedisServerOptions): Promise<RedisServer> {
    const redis = await RedisServer.start(options)
    alive.add(redis)
    this.defer(async () => {
      await redis.stop()
      alive.delete(redis)
    })
    return redis
  }

  /** A Herald process (`node --import tsx src/server.ts`) on a free port; LOG_LEVEL warn unless `env` says. */
  async herald (env: Record<string, string>, openFiles?: number): Promise<HeraldProcess> {
    const herald = await HeraldProcess.start(env, openFiles)
    alive.add(herald)
    this.defer(async () => {
      await herald.kill()
      alive.delete(herald)
    })
    return herald
  }

  /** Runs `part` in a lab of its own, whose processes stop when the part ends: a fresh start for each part. */
  async part<T> (run: (lab: Lab) => Promise<T>): Promise<T> {
    const inner = new Lab()
    this.defer(async () => await inner.close())
    try {
      return await run(inner)
    } finally {
      await inner.close()
    }
  }

  /** Runs `close` when the finding ends (client sockets, proxies, admin connections). */
  defer (close: () => unknown): void {
    this.closers.push(close)
  }

  async close (): Promise<void> {
    for (const close of this.closers.splice(0).reverse()) {
      try {
        await close()
      } catch {}
    }
  }
}

/** Last resort when the run exits: SIGKILL, by PID, whatever a lab started and did not stop. */
export function killEverything (): void {
  for (const process_ of alive) {
    if (process_.pid === undefined) continue
    try {
      process.kill(process_.pid, 'SIGKILL')
    } catch {}
  }
}

/** What Herald's /health says (status, open streams); status `no answer` when it did not answer within 10 s. */
export async function heraldHealth (url: string): Promise<{ status: string, subscriptions: number }> {
  try {
    return await (await fetch(`${url}/health`, { signal: AbortSignal.timeout(10_000) })).json() as { status: string, subscriptions: number }
  } catch {
    return { status: 'no answer', subscriptions: 0 }
  }
}
