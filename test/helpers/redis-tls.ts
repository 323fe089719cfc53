import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { freePort } from './redis-server.js'

/** PEM files for a TLS Redis deployment: a CA, a server certificate for 127.0.0.1, a client certificate, another CA. */
export interface RedisTlsFiles {
  directory: string
  caPath: string
  serverCertPath: string
  serverKeyPath: string
  clientCertPath: string
  clientKeyPath: string
  /** A CA that signed nothing here: trusting it alone must fail. */
  otherCaPath: string
}

/** Makes the files with openssl in a new temporary directory; the caller removes `directory`. */
export function redisTlsFiles (): RedisTlsFiles {
  const directory = mkdtempSync(join(tmpdir(), 'herald-redis-tls-'))
  const path = (name: string) => join(directory, name)
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] })
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  for (const ca of ['ca', 'other-ca']) {
    openssl('req', '-x509', ...ec, '-days', '2', '-subj', `/CN=Herald test Redis ${ca}`, '-keyout', path(`${ca}.key`), '-out', path(`${ca}.pem`))
  }
  const sign = (name: string, subject: string, extensions: string) => {
    openssl('req', '-new', ...ec, '-subj', subject, '-keyout', path(`${name}.key`), '-out', path(`${name}.csr`))
    writeFileSync(path(`${name}.ext`), extensions)
    openssl('x509', '-req', '-in', path(`${name}.csr`), '-CA', path('ca.pem'), '-CAkey', path('ca.key'), '-CAcreateserial',
      '-days', '2', '-extfile', path(`${name}.ext`), '-out', path(`${name}.pem`))
  }
  sign('server', '/CN=127.0.0.1', 'subjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth\n')
  sign('client', '/CN=herald', 'extendedKeyUsage = clientAuth\n')
  return {
    directory,
    caPath: path('ca.pem'),
    serverCertPath: path('server.pem'),
    serverKeyPath: path('server.key'),
    clientCertPath: path('client.pem'),
    clientKeyPath: path('client.key'),
    otherCaPath: path('other-ca.pem')
  }
}

/**
 * A redis-server that speaks TLS only (--port 0) and asks every client for a certificate its CA signed
 * (--tls-auth-clients yes). Stopped by PID in `stop`.
 */
export class TlsRedisServer {
  private constructor (readonly port: number, private readonly process: ChildProcess, readonly files: RedisTlsFiles) {}

  static async start (files: RedisTlsFiles): Promise<TlsRedisServer> {
    const port = await freePort()
    const child = spawn('redis-server', ['--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '--dir', files.directory,
      '--save', '', '--appendonly', 'no', '--tls-cert-file', files.serverCertPath, '--tls-key-file', files.serverKeyPath,
      '--tls-ca-cert-file', files.caPath, '--tls-auth-clients', 'yes'], { stdio: 'ignore' })
    const server = new TlsRedisServer(port, child, files)
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline) {
      const probe = server.client({ lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 })
      probe.on('error', () => {})
      try {
        await probe.connect()
        await probe.ping()
        return server
      } catch {
        if (child.exitCode !== null) throw new Error(`redis-server (TLS) exited with code ${child.exitCode}: is it built with TLS?`)
        await sleep(50)
      } finally {
        probe.disconnect()
      }
    }
    await server.stop()
    throw new Error(`redis-server (TLS) did not answer on port ${port} within 10 s`)
  }

  get url (): string {
    return `rediss://127.0.0.1:${this.port}`
  }

  /** A client with the client certificate, for assertions; the caller disconnects it. */
  client (options: Record<string, unknown> = {}): Redis {
    return new Redis({
      host: '127.0.0.1',
      port: this.port,
      tls: { ca: readFileSync(this.files.caPath), cert: readFileSync(this.files.clientCertPath), key: readFileSync(this.files.clientKeyPath) },
      ...options
    })
  }

  async stop (): Promise<void> {
    if (this.process.exitCode === null && this.process.signalCode === null) {
      const exited = new Promise((resolve) => this.process.once('exit', resolve))
      this.process.kill('SIGKILL')
      await exited
    }
    rmSync(this.files.directory, { recursive: true, force: true })
  }
}
