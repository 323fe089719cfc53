import { createSigner } from 'fast-jwt'
import { generateKeyPairSync } from 'node:crypto'

export const SECRET = 'test-secret-that-is-long-enough-0123456789'

export interface TokenOptions {
  publish?: string[]
  subscribe?: string[]
  /** Seconds from now; negative for an expired token. */
  expiresIn?: number
  notBefore?: number
  key?: string
  algorithm?: 'HS256' | 'RS256' | 'ES256'
  iss?: string
  aud?: string
  /** The `sub` claim; 'tester' unless given, none when null. */
  subject?: string | null
}

export function token (options: TokenOptions = {}): string {
  const now = Math.floor(Date.now() / 1000)
  const sign = createSigner({ key: options.key ?? SECRET, algorithm: options.algorithm ?? 'HS256', noTimestamp: true })
  const payload: Record<string, unknown> = {
    iat: now,
    exp: now + (options.expiresIn ?? 3600),
    herald: { publish: options.publish ?? [], subscribe: options.subscribe ?? [] }
  }
  if (options.subject !== null) payload.sub = options.subject ?? 'tester'
  if (options.notBefore !== undefined) payload.nbf = now + options.notBefore
  if (options.iss !== undefined) payload.iss = options.iss
  if (options.aud !== undefined) payload.aud = options.aud
  return sign(payload)
}

/** An unsigned token (`alg: none`) carrying generous claims: must never be accepted. */
export function unsignedToken (): string {
  const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
  const now = Math.floor(Date.now() / 1000)
  return `${encode({ alg: 'none', typ: 'JWT' })}.${encode({ sub: 'x', exp: now + 3600, herald: { publish: ['**'], subscribe: ['**'] } })}.`
}

export function keyPair (type: 'rsa' | 'ec'): { publicKey: string, privateKey: string } {
  const pair = type === 'rsa'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return {
    publicKey: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    privateKey: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  }
}
