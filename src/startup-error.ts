/**
 * Herald cannot start as configured: a setting names something that refuses it (a Redis password, a busy
 * port). Its message is the one line the operator reads, naming the setting and the address; the process logs
 * it without a stack and exits non-zero.
 */
export class StartupError extends Error {
  constructor (readonly setting: string, readonly address: string, message: string) {
    super(`${setting}: ${message}`)
    this.name = 'StartupError'
  }
}

/**
 * Why listening on `host:port` failed, as a StartupError naming the setting at fault: the port's, or the host's
 * when no interface has that address; undefined for an error that is not about the address.
 */
export function listenRefusal (error: unknown, settings: { port: string, host: string }, host: string, port: number): StartupError | undefined {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  const address = `${host.includes(':') ? `[${host}]` : host}:${port}`
  const why = code === undefined ? undefined : LISTEN_ERRORS[code]
  if (why === undefined) return undefined
  return new StartupError(code === 'EADDRNOTAVAIL' ? settings.host : settings.port, address, `cannot listen on ${address}: ${why} (${code as string})`)
}

const LISTEN_ERRORS: Record<string, string> = {
  EADDRINUSE: 'another process already listens there (a second Herald on this host?); choose a free port',
  EACCES: 'not allowed to bind that port (below 1024 needs privileges)',
  EADDRNOTAVAIL: 'no interface of this host has that address'
}

/** `host:port` of a redis:// URL, without its credentials. */
export function redisAddress (url: string): string {
  try {
    const parsed = new URL(url)
    return `${parsed.hostname === '' ? '127.0.0.1' : parsed.hostname}:${parsed.port === '' ? '6379' : parsed.port}`
  } catch {
    return 'REDIS_URL'
  }
}
