import { createPublicKey } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Type, type Static } from 'typebox'
import { Value } from 'typebox/value'
import { patternProblem } from './topic-patterns.js'

/**
 * The environment Herald reads, as one TypeBox schema. Every variable has a default or is optional,
 * so a fresh machine starts with no configuration at all (embedded memory broker on loopback).
 * Each `description` is what the variable expects: it is the text of the error for a bad value.
 */
const Flag = (description: string, fallback: 'true' | 'false') =>
  Type.Union(['1', '0', 'true', 'false'].map((value) => Type.Literal(value)), { description, default: fallback })

const Integer = (description: string, minimum: number, fallback: number, maximum?: number) =>
  Type.Integer({ description, minimum, default: fallback, ...(maximum === undefined ? {} : { maximum }) })

export const EnvSchema = Type.Object({
  HOST: Type.String({ description: 'an address to bind, e.g. 127.0.0.1 or ::', minLength: 1, default: '127.0.0.1' }),
  PORT: Integer('a TCP port, 0-65535', 0, 8080, 65535),
  REDIS_URL: Type.Optional(Type.String({ description: 'a redis:// or rediss:// URL', pattern: '^rediss?://' })),
  LOG_LEVEL: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((level) => Type.Literal(level)),
    { description: 'one of fatal, error, warn, info, debug, trace, silent', default: 'info' }
  ),
  HERALD_HEARTBEAT_MS: Integer('milliseconds between heartbeat comments, at least 50', 50, 15_000),
  HERALD_RETRY_MS: Integer('milliseconds a client waits before reconnecting, sent as `retry:`', 0, 2_000),
  HERALD_REDIS_PREFIX: Type.String({ description: 'a key prefix such as herald:', pattern: '^[^\\s]*$', default: 'herald:' }),
  HERALD_MAX_BODY_BYTES: Integer('the largest publish body in bytes, at least 1024', 1024, 65_536),
  HERALD_MAX_TOPICS_PER_STREAM: Integer('how many topics one stream may subscribe to, at least 1', 1, 32),
  HERALD_MAX_QUEUE_BYTES: Integer('bytes queued for one slow connection before it is ended, at least 1024', 1024, 1_048_576),
  HERALD_HISTORY_SIZE: Integer('events kept per topic for resume, 0 or more', 0, 1_000),
  HERALD_HISTORY_TTL_MS: Integer('milliseconds an event stays replayable, 0 = no time limit', 0, 0),
  HERALD_IDEMPOTENCY_TTL_MS: Integer('milliseconds an idempotency key is remembered, at least 1', 1, 86_400_000),
  HERALD_JWT_SECRET: Type.Optional(Type.String({ description: 'an HS256 secret of at least 32 characters', minLength: 32 })),
  HERALD_JWT_PUBLIC_KEY: Type.Optional(Type.String({ description: 'an RSA or EC public key: PEM text or the path of a PEM file', minLength: 1 })),
  HERALD_JWT_ISSUER: Type.Optional(Type.String({ description: 'the issuer (iss) tokens must carry', minLength: 1 })),
  HERALD_JWT_AUDIENCE: Type.Optional(Type.String({ description: 'the audience (aud) tokens must carry', minLength: 1 })),
  HERALD_ALLOW_INSECURE: Flag('1 or true to allow open development mode on a non-loopback address', 'false'),
  HERALD_PRIVATE_TOPICS: Type.String({ description: 'comma-separated topic patterns that need a subscriber token, e.g. private/**,users/*', default: '' }),
  HERALD_PUBLIC_SUBSCRIBE: Flag('true (topics are public unless private) or false (every topic needs a token)', 'true'),
  HERALD_COOKIE_NAME: Type.String({ description: 'a cookie name (letters, digits, - and _)', pattern: '^[A-Za-z0-9_-]{1,64}$', default: 'herald_token' }),
  HERALD_CORS_ORIGINS: Type.String({ description: 'comma-separated origins such as https://app.example.com, or *', pattern: '^(\\*|(https?://[^,\\s/]+)(,\\s*https?://[^,\\s/]+)*)?$', default: '' }),
  HERALD_MAX_CONNECTIONS: Integer('open streams one instance accepts, at least 1', 1, 10_000),
  HERALD_RATE_LIMIT_PER_MINUTE: Integer('publishes per minute per token (or per address without one), 0 = no limit', 0, 0),
  HERALD_TRUST_PROXY: Type.String({
    description: 'true to take client addresses from X-Forwarded-For through any proxy, or comma-separated proxy addresses or CIDRs such as 10.0.0.0/8',
    pattern: '^(true|false|[0-9A-Fa-f.:/]+(,\\s*[0-9A-Fa-f.:/]+)*)?$',
    default: ''
  })
})

export type Env = Static<typeof EnvSchema>

export interface Config {
  host: string
  port: number
  redisUrl: string | undefined
  logLevel: string
  heartbeatMs: number
  retryMs: number
  redisPrefix: string
  maxBodyBytes: number
  maxTopicsPerStream: number
  maxQueueBytes: number
  historySize: number
  historyTtlMs: number
  idempotencyTtlMs: number
  /** Token verification; undefined runs open development mode. */
  jwt: JwtConfig | undefined
  allowInsecure: boolean
  privateTopics: string[]
  publicSubscribe: boolean
  cookieName: string
  /** Origins allowed by CORS: a list, '*' for any (without credentials), or none. */
  corsOrigins: string[] | '*'
  maxConnections: number
  rateLimitPerMinute: number
  /** Fastify's trustProxy: which proxies' X-Forwarded-For gives the client address (rate limits key on it). */
  trustProxy: boolean | string
}

export interface JwtConfig {
  /** The HS256 secret, or the PEM text of an RSA/EC public key. */
  key: string
  algorithms: Array<'HS256' | 'RS256' | 'ES256'>
  issuer?: string
  audience?: string
}

export class ConfigError extends Error {
  constructor (readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((problem) => `  ${problem}`).join('\n')}`)
    this.name = 'ConfigError'
  }
}

/** Integers are converted only when they are written as integers: "3.5" or "1e3" stay strings and fail. */
function toTyped (raw: Record<string, unknown>): Record<string, unknown> {
  const typed: Record<string, unknown> = {}
  for (const [name, value] of Object.entries(raw)) {
    const schema = EnvSchema.properties[name as keyof Env] as { type?: string }
    typed[name] = schema.type === 'integer' && typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value
  }
  return typed
}

/** Parses the environment once; throws a ConfigError with one line per bad variable. */
export function loadConfig (environment: NodeJS.ProcessEnv = process.env): Config {
  const raw: Record<string, unknown> = {}
  for (const name of Object.keys(EnvSchema.properties)) {
    const value = environment[name]
    // An empty variable means "not set", as in shells and compose files.
    if (value !== undefined && value !== '') raw[name] = value
  }
  const env = Value.Default(EnvSchema, toTyped(raw)) as Record<string, unknown>

  // Each variable is checked alone, so every bad one is reported, not just the first few.
  const problems = new Map<string, string>()
  for (const [name, schema] of Object.entries(EnvSchema.properties)) {
    if (env[name] === undefined || Value.Check(schema, env[name])) continue
    // A secret never reaches a log, even a wrong one.
    const shown = name.includes('SECRET') ? `(hidden, ${String(raw[name]).length} characters)` : JSON.stringify(raw[name])
    problems.set(name, `${name}=${shown}: expected ${(schema as { description?: string }).description ?? 'a valid value'}`)
  }
  if (problems.size > 0) throw new ConfigError([...problems.values()])

  const valid = env as Env
  const list = (value: string) => value.split(',').map((item) => item.trim()).filter((item) => item !== '')
  const privateTopics = list(valid.HERALD_PRIVATE_TOPICS)
  const publicSubscribe = valid.HERALD_PUBLIC_SUBSCRIBE === 'true' || valid.HERALD_PUBLIC_SUBSCRIBE === '1'
  const extra: string[] = []
  for (const pattern of privateTopics) {
    const problem = patternProblem(pattern)
    if (problem !== undefined) extra.push(`HERALD_PRIVATE_TOPICS=${JSON.stringify(valid.HERALD_PRIVATE_TOPICS)}: pattern ${JSON.stringify(pattern)}: ${problem}`)
  }
  let jwt: JwtConfig | undefined
  try {
    jwt = jwtConfig(valid)
  } catch (error) {
    extra.push((error as Error).message)
  }
  if (jwt === undefined && (privateTopics.length > 0 || !publicSubscribe) && extra.length === 0) {
    extra.push('HERALD_PRIVATE_TOPICS / HERALD_PUBLIC_SUBSCRIBE: private topics need HERALD_JWT_SECRET or HERALD_JWT_PUBLIC_KEY to check tokens')
  }
  if (extra.length > 0) throw new ConfigError(extra)

  return {
    host: valid.HOST,
    port: valid.PORT,
    redisUrl: valid.REDIS_URL,
    logLevel: valid.LOG_LEVEL,
    heartbeatMs: valid.HERALD_HEARTBEAT_MS,
    retryMs: valid.HERALD_RETRY_MS,
    redisPrefix: valid.HERALD_REDIS_PREFIX,
    maxBodyBytes: valid.HERALD_MAX_BODY_BYTES,
    maxTopicsPerStream: valid.HERALD_MAX_TOPICS_PER_STREAM,
    maxQueueBytes: valid.HERALD_MAX_QUEUE_BYTES,
    historySize: valid.HERALD_HISTORY_SIZE,
    historyTtlMs: valid.HERALD_HISTORY_TTL_MS,
    idempotencyTtlMs: valid.HERALD_IDEMPOTENCY_TTL_MS,
    jwt,
    allowInsecure: valid.HERALD_ALLOW_INSECURE === 'true' || valid.HERALD_ALLOW_INSECURE === '1',
    privateTopics,
    publicSubscribe,
    cookieName: valid.HERALD_COOKIE_NAME,
    corsOrigins: valid.HERALD_CORS_ORIGINS.trim() === '*' ? '*' : list(valid.HERALD_CORS_ORIGINS),
    maxConnections: valid.HERALD_MAX_CONNECTIONS,
    rateLimitPerMinute: valid.HERALD_RATE_LIMIT_PER_MINUTE,
    trustProxy: trustProxyOf(valid.HERALD_TRUST_PROXY)
  }
}

/** Fastify's trustProxy from the variable: true, or a list of proxy addresses; unset and false trust no proxy. */
function trustProxyOf (value: string): boolean | string {
  if (value === 'true') return true
  return value === '' || value === 'false' ? false : value
}

/** Picks the verification key and pins the algorithms to its type, so no token can choose another. */
function jwtConfig (env: Env): JwtConfig | undefined {
  const secret = env.HERALD_JWT_SECRET
  const publicKey = env.HERALD_JWT_PUBLIC_KEY
  if (secret !== undefined && publicKey !== undefined) {
    throw new Error('HERALD_JWT_SECRET and HERALD_JWT_PUBLIC_KEY: set one of them, not both')
  }
  let config: JwtConfig | undefined
  if (secret !== undefined) config = { key: secret, algorithms: ['HS256'] }
  if (publicKey !== undefined) {
    const pem = publicKey.includes('-----BEGIN') ? publicKey : readKeyFile(publicKey)
    let type: string | undefined
    try {
      type = createPublicKey(pem).asymmetricKeyType
    } catch {
      throw new Error('HERALD_JWT_PUBLIC_KEY: expected an RSA or EC public key in PEM form')
    }
    if (type !== 'rsa' && type !== 'ec') throw new Error(`HERALD_JWT_PUBLIC_KEY: expected an RSA or EC public key, got ${type ?? 'an unknown key'}`)
    config = { key: pem, algorithms: [type === 'rsa' ? 'RS256' : 'ES256'] }
  }
  if (config === undefined) return undefined
  if (env.HERALD_JWT_ISSUER !== undefined) config.issuer = env.HERALD_JWT_ISSUER
  if (env.HERALD_JWT_AUDIENCE !== undefined) config.audience = env.HERALD_JWT_AUDIENCE
  return config
}

function readKeyFile (path: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    throw new Error(`HERALD_JWT_PUBLIC_KEY=${JSON.stringify(path)}: expected PEM text or a readable PEM file`)
  }
}

/** Why open development mode may not listen where the config says; undefined when it may. */
export function insecureBindRefusal (config: Config): string | undefined {
  if (config.jwt !== undefined || config.allowInsecure || isLoopback(config.host)) return undefined
  return `refusing to listen on ${config.host} in open development mode: anyone could publish. ` +
    'Set HERALD_JWT_SECRET or HERALD_JWT_PUBLIC_KEY, or HERALD_ALLOW_INSECURE=1 if something else guards this port.'
}

/** True for addresses only this machine can reach. */
export function isLoopback (host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}
