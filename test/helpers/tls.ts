import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface TestCertificate {
  /** PEM files for HERALD_TLS_CERT and HERALD_TLS_KEY: a server certificate for 127.0.0.1 and localhost. */
  certPath: string
  keyPath: string
  /** The PEM of the CA that signed it, for clients to trust. */
  ca: string
}

let made: TestCertificate | undefined

/**
 * A throwaway CA and a server certificate it signed, made with openssl in a temporary directory (removed when the
 * process exits), once per test process.
 */
export function testCertificate (): TestCertificate {
  if (made !== undefined) return made
  const dir = mkdtempSync(join(tmpdir(), 'herald-tls-'))
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }))
  const path = (name: string) => join(dir, name)
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] })
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=Herald test CA', '-keyout', path('ca.key'), '-out', path('ca.pem'))
  openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-subj', '/CN=127.0.0.1', '-keyout', path('server.key'), '-out', path('server.csr'))
  writeFileSync(path('server.ext'), 'subjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth\n')
  openssl('x509', '-req', '-in', path('server.csr'), '-CA', path('ca.pem'), '-CAkey', path('ca.key'), '-CAcreateserial',
    '-days', '2', '-extfile', path('server.ext'), '-out', path('server.pem'))
  made = { certPath: path('server.pem'), keyPath: path('server.key'), ca: readFileSync(path('ca.pem'), 'utf8') }
  return made
}
