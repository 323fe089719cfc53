import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Type, type Static, type TOptional, type TSchema } from 'typebox'
import { Value } from 'typebox/value'
import { maxStreamIdLength } from './protocol.js'
import { modeProblem, parseSentinelUrl, SENTINEL_SCHEME, type RedisModeSetting } from './redis-topology.js'
import { MAX_TOPICS_PER_STREAM } from './schemas.js'
import { patternProblem } from './topic-patterns.js'

/** One environment variable: its schema, and the Config field it becomes (none for inputs of a derived field). */
interface Setting<Name extends string, Schema extends TSchema, Field extends string, Value> {
  name: Name
  /** Its `description` says what the variable expects: the README's table and the error for a bad value. */
  schema: Schema
  field: Field | undefined
  convert: (value: EnvValue<Schema>) => Value
}

/** A variable's checked value: after defaults, only optional variables can still be undefined. */
type EnvValue<Schema extends TSchema> = Schema extends TOptional ? Static<Schema> | undefined : Static<Schema>

/**
 * Declares a variable. Without `field` it only feeds a derived field (Field stays never, so Config gets no key for
 * it); without `convert` its Config field is the checked value as is.
 */
function setting<const Name extends string, Schema extends TSchema, const Field extends string = never, Value = EnvValue<Schema>> (
  name: Name, schema: Schema, field?: Field, convert?: (value: EnvValue<Schema>) => Value
): Setting<Name, Schema, Field, Value> {
  if (typeof (schema as { description?: unknown }).description !== 'string') throw new Error(`${name}: the schema needs a description`)
  return { name, schema, field, convert: convert ?? ((value) => value as Value) }
}

/** One of a few words, typed as a string: TypeBox would infer a union of mapped literals as never. */
const OneOf = (words: string[], description: string, fallback: string) =>
  Type.Unsafe<string>(Type.Union(words.map((word) => Type.Literal(word)), { description, default: fallback }))

const Flag = (description: string, fallback: 'true' | 'false') => OneOf(['1', '0', 'true', 'false'], description, fallback)

const Integer = (description: string, minimum: number, fallback: number, maximum?: number) =>
  Type.Integer({ description, minimum, default: fallback, ...(maximum === undefined ? {} : { maximum }) })

/** A DNS name or IPv4 address, or an IPv6 address in brackets, as it stands in a Host header without its port. */
const HOST_NAME = '([A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*|\\[[0-9A-Fa-f:.]+\\])'

/** One HERALD_TRUST_PROXY entry: an address or CIDR, or a range name proxy-addr knows. */
const PROXY = '(loopback|linklocal|uniquelocal|[0-9A-Fa-f.:/]+)'

const isSet = (flag: string) => flag === 'true' || flag === '1'
const list = (value: string) => value.split(',').map((item) => item.trim()).filter((item) => item !== '')

/**
 * The environment Herald reads, one entry per variable, in the README's order. Every variable has a default or
 * is optional, so a fresh machine starts with no configuration at all (embedded memory broker on loopback).
 */
const settings = [
  setting('HOST', Type.String({ description: 'an address to bind, e.g. 127.0.0.1 or ::', minLength: 1, default: '127.0.0.1' }), 'host'),
  setting('PORT', Integer('a TCP port, 0-65535', 0, 8080, 65535), 'port'),
  // Both or neither: tlsConfig reads and checks them together into the derived `tls`.
  setting('HERALD_TLS_CERT', Type.Optional(Type.String({ description: 'the path of a PEM file with the server certificate (and its chain): serve HTTPS with HTTP/2 and HTTP/1.1; needs HERALD_TLS_KEY', minLength: 1 }))),
  setting('HERALD_TLS_KEY', Type.Optional(Type.String({ description: 'the path of a PEM file with the private key of HERALD_TLS_CERT', minLength: 1 }))),
  setting('REDIS_URL', Type.Optional(Type.String({ description: 'a redis:// or rediss:// URL (any node of a Redis Cluster will do), or redis+sentinel://[user:password@]host:port,host:port/<master name>; see docs/redis.md', pattern: '^(rediss?|redis\\+sentinel)://' })), 'redisUrl'),
  setting('LOG_LEVEL', OneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'one of fatal, error, warn, info, debug, trace, silent', 'info'), 'logLevel'),
  setting('HERALD_HEARTBEAT_MS', Integer('milliseconds between heartbeat comments, at least 50', 50, 15_000), 'heartbeatMs'),
  setting('HERALD_RETRY_MS', Integer('milliseconds a client waits before reconnecting, sent as `retry:`', 0, 2_000), 'retryMs'),
  // A hung Redis (stopped, swapping, a blocked script) holds a connection open and answers nothing: without a
  // timeout a publish would wait forever instead of answering 503.
  setting('HERALD_REDIS_COMMAND_TIMEOUT_MS', Integer('milliseconds a Redis command may take before it fails (a publish answers 503), at least 10', 10, 1_000), 'redisCommandTimeoutMs'),
  setting('HERALD_REDIS_MODE', OneOf(['auto', 'standalone', 'cluster', 'sentinel'],
    'auto (Sentinel for a redis+sentinel:// URL, else Cluster when the server says cluster_enabled:1), standalone, cluster or sentinel', 'auto'),
  'redisMode', (value) => value as RedisModeSetting),
  // Read and checked together into the derived `redisTls`.
  setting('HERALD_REDIS_TLS_CA', Type.Optional(Type.String({ description: 'the path of a PEM file with the CA certificate(s) that signed the Redis servers\' certificates (rediss:// only; default: the system CAs)', minLength: 1 }))),
  setting('HERALD_REDIS_TLS_CERT', Type.Optional(Type.String({ description: 'the path of a PEM file with the client certificate Herald shows Redis (rediss:// only); needs HERALD_REDIS_TLS_KEY', minLength: 1 }))),
  setting('HERALD_REDIS_TLS_KEY', Type.Optional(Type.String({ description: 'the path of a PEM file with the private key of HERALD_REDIS_TLS_CERT', minLength: 1 }))),
  setting('HERALD_REDIS_PREFIX', Type.String({ description: 'a key prefix such as herald:', pattern: '^[^\\s]*$', default: 'herald:' }), 'redisPrefix'),
  setting('HERALD_MAX_BODY_BYTES', Integer('the largest publish body in bytes, at least 1024', 1024, 65_536), 'maxBodyBytes'),
  setting('HERALD_MAX_BATCH_EVENTS', Integer('how many events one POST /v1/events/batch may hold, at least 1 (its body is bounded by HERALD_MAX_BODY_BYTES too)', 1, 1_000), 'maxBatchEvents'),
  // Bounds a stream's id, which carries a position per topic: 38 characters per topic, 2,495 at 64 topics.
  setting('HERALD_MAX_TOPICS_PER_STREAM', Integer(`how many topics one stream may subscribe to, 1-${MAX_TOPICS_PER_STREAM}; a stream's id carries each topic's position, at most ${maxStreamIdLength(32)} characters with 32 topics and ${maxStreamIdLength(MAX_TOPICS_PER_STREAM)} with ${MAX_TOPICS_PER_STREAM}`, 1, 32, MAX_TOPICS_PER_STREAM), 'maxTopicsPerStream'),
  setting('HERALD_MAX_QUEUE_BYTES', Integer('bytes queued for one slow connection before it is ended, at least 1024', 1024, 1_048_576), 'maxQueueBytes'),
  setting('HERALD_STALL_TIMEOUT_MS', Integer('milliseconds a connection may take no byte while bytes wait for it before it is reset, checked every heartbeat, at least 100', 100, 30_000), 'stallTimeoutMs'),
  // SIGTERM: readiness fails at once, new streams are refused (retryably), open ones end spread over this
  // window so their clients do not all reconnect in the same moment, publishes keep working until it ends.
  setting('HERALD_DRAIN_MS', Integer('milliseconds SIGTERM spends draining: open streams end spread over it while publishes still work, then the process exits; 0 = at once', 0, 5_000), 'drainMs'),
  setting('HERALD_HISTORY_SIZE', Integer('events kept per topic for resume, 0 or more', 0, 1_000), 'historySize'),
  setting('HERALD_HISTORY_TTL_MS', Integer('milliseconds an event stays replayable, 0 = no time limit', 0, 0), 'historyTtlMs'),
  setting('HERALD_HISTORY_RETENTION_MS', Integer('milliseconds a topic\'s history is kept after its last event (on Redis up to a tenth longer), at least 1000', 1000, 86_400_000), 'historyRetentionMs'),
  setting('HERALD_IDEMPOTENCY_TTL_MS', Integer('milliseconds an idempotency key is remembered, at least 1', 1, 600_000), 'idempotencyTtlMs'),
  // The four JWT variables have no field of their own: jwtConfig checks them together into the derived `jwt`.
  setting('HERALD_JWT_SECRET', Type.Optional(Type.String({ description: 'an HS256 secret of at least 32 characters', minLength: 32 }))),
  setting('HERALD_JWT_PUBLIC_KEY', Type.Optional(Type.String({ description: 'an RSA or EC public key: PEM text or the path of a PEM file', minLength: 1 }))),
  setting('HERALD_JWT_ISSUER', Type.Optional(Type.String({ description: 'the issuer (iss) tokens must carry', minLength: 1 }))),
  setting('HERALD_JWT_AUDIENCE', Type.Optional(Type.String({ description: 'the audience (aud) tokens must carry', minLength: 1 }))),
  setting('HERALD_ALLOW_INSECURE', Flag('1 or true to allow open development mode on a non-loopback address', 'false'), 'allowInsecure', isSet),
  // Open development mode answers loopback Host names only (the DNS-rebinding guard in plugins/auth.ts): behind a
  // balancer, or reached by a container name, the names it is reached by are listed here; * switches the guard off.
  setting('HERALD_ALLOWED_HOSTS', Type.String({
    description: 'comma-separated host names (no port) that open development mode answers besides loopback ones, such as push.internal,herald; * for any',
    pattern: `^(\\*|${HOST_NAME}(,\\s*${HOST_NAME})*)?$`,
    default: ''
  }), 'allowedHosts', (value): string[] | '*' => value.trim() === '*' ? '*' : list(value).map((host) => host.toLowerCase())),
  setting('HERALD_PRIVATE_TOPICS', Type.String({ description: 'comma-separated topic patterns that need a subscriber token, e.g. private/**,users/*', default: '' }), 'privateTopics', list),
  setting('HERALD_PUBLIC_SUBSCRIBE', Flag('true (topics are public unless private) or false (every topic needs a token)', 'true'), 'publicSubscribe', isSet),
  setting('HERALD_COOKIE_NAME', Type.String({ description: 'a cookie name (letters, digits, - and _)', pattern: '^[A-Za-z0-9_-]{1,64}$', default: 'herald_token' }), 'cookieName'),
  // Origins allowed by CORS: a list, '*' for any (without credentials), or none.
  setting('HERALD_CORS_ORIGINS', Type.String({ description: 'comma-separated origins such as https://app.example.com, or *', pattern: '^(\\*|(https?://[^,\\s/]+)(,\\s*https?://[^,\\s/]+)*)?$', default: '' }),
    'corsOrigins', (value): string[] | '*' => value.trim() === '*' ? '*' : list(value)),
  setting('HERALD_MAX_CONNECTIONS', Integer('open streams one instance accepts, at least 1', 1, 10_000), 'maxConnections'),
  // Per client: defaults no honest page reaches (a browser opens at most a few streams per tab), far below the
  // instance cap, so one host or one user cannot take every slot.
  setting('HERALD_MAX_STREAMS_PER_ADDRESS', Integer('open streams one client address may hold on an instance (see HERALD_TRUST_PROXY), 0 = no limit', 0, 1_000), 'maxStreamsPerAddress'),
  setting('HERALD_MAX_STREAMS_PER_SUBJECT', Integer('open streams one verified token subject may hold on an instance, 0 = no limit', 0, 100), 'maxStreamsPerSubject'),
  // Every socket costs a file descriptor: past this Node closes new ones at once, before the process runs out.
  setting('HERALD_MAX_SOCKETS', Integer('open TCP connections one instance accepts (streams, publishes, idle keep-alive), at least 1; at most the open-file limit less 64 (lowered to that and said at start: at info when set, at debug when unset)', 1, 20_000), 'maxSockets'),
  setting('HERALD_HEADERS_TIMEOUT_MS', Integer('milliseconds a connection has to send its request headers (from its first byte, or from opening it), at least 100', 100, 10_000), 'headersTimeoutMs'),
  setting('HERALD_REQUEST_TIMEOUT_MS', Integer('milliseconds a client has to send a whole request, body included, at least 100 and at least HERALD_HEADERS_TIMEOUT_MS', 100, 30_000), 'requestTimeoutMs'),
  setting('HERALD_RATE_LIMIT_PER_MINUTE', Integer('topic-events per minute (an event to N topics counts N) per token subject, or per address without one, on each instance; 0 = no limit', 0, 0), 'rateLimitPerMinute'),
  // Metrics on a listener of their own: Prometheus reaches it on the internal network, the public port never
  // serves it, and no token is needed to scrape.
  setting('HERALD_METRICS_PORT', Type.String({ description: 'the port of the Prometheus /metrics listener, 0 = any free port, off = none', pattern: '^(off|0|[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$', default: '9464' }),
    'metricsPort', (value): number | undefined => value === 'off' ? undefined : Number(value)),
  setting('HERALD_METRICS_HOST', Type.Optional(Type.String({ description: 'the address the /metrics listener binds, HOST when unset', minLength: 1 })), 'metricsHost'),
  // Fastify's trustProxy: which proxies' X-Forwarded-For gives the client address (rate limits key on it).
  // True, or the list of proxy addresses as Fastify takes it (proxy-addr's range names too: in compose the
  // balancer's address is whatever Docker gives it, within uniquelocal); unset and false trust no proxy.
  setting('HERALD_TRUST_PROXY', Type.String({
    description: 'true to take client addresses from X-Forwarded-For through any proxy, or comma-separated proxy addresses, CIDRs such as 10.0.0.0/8, or the names loopback, linklocal, uniquelocal (the private ranges)',
    pattern: `^(true|false|${PROXY}(,\\s*${PROXY})*)?$`,
    default: ''
  }), 'trustProxy', (value): boolean | string => value === 'true' || (value !== '' && value !== 'false' && value))
]

type AnySetting = typeof settings[number]

export const EnvSchema = Type.Object(
  Object.fromEntries(settings.map(({ name, schema }) => [name, schema])) as { [S in AnySetting as S['name']]: S['schema'] }
)

export type Env = Static<typeof EnvSchema>

/** What Herald runs with: one field per setting that has one, plus the fields derived from several. */
export interface Config extends SettingFields {
  /** Token verification; undefined runs open development mode. */
  jwt: JwtConfig | undefined
  /** The certificate and key to serve HTTPS (HTTP/2, and HTTP/1.1 by ALPN) with; undefined serves plain HTTP/1.1. */
  tls: TlsConfig | undefined
  /** The variables the environment set; the others have their defaults. */
  setVariables: ReadonlySet<string>
  /** What a rediss:// connection trusts and shows; undefined: the system CAs and no client certificate. */
  redisTls: RedisTlsConfig | undefined
}

/** PEM texts for the TLS connections to Redis. */
export interface RedisTlsConfig {
  ca?: string
  cert?: string
  key?: string
}

export interface TlsConfig {
  /** PEM text: the certificate, then any intermediates. */
  cert: string
  /** PEM text. */
  key: string
}

type SettingFields = { [S in AnySetting as NonNullable<S['field']>]: ReturnType<S['convert']> }

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

const descriptionOf = (schema: TSchema) => (schema as { description: string }).description

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
  for (const { name } of settings) {
    const value = environment[name]
    // An empty variable means "not set", as in shells and compose files.
    if (value !== undefined && value !== '') raw[name] = value
  }
  const env = Value.Default(EnvSchema, toTyped(raw)) as Record<string, unknown>

  // Each variable is checked alone, so every bad one is reported, not just the first few.
  const problems = new Map<string, string>()
  for (const { name, schema } of settings) {
    if (env[name] === undefined || Value.Check(schema, env[name])) continue
    // A secret never reaches a log, even a wrong one.
    const shown = name.includes('SECRET') ? `(hidden, ${String(raw[name]).length} characters)` : JSON.stringify(raw[name])
    problems.set(name, `${name}=${shown}: expected ${descriptionOf(schema)}`)
  }
  if (problems.size > 0) throw new ConfigError([...problems.values()])

  const fields: Record<string, unknown> = {}
  for (const { name, field, convert } of settings) {
    if (field !== undefined) fields[field] = (convert as (value: unknown) => unknown)(env[name])
  }
  const valid = env as Env
  const config = fields as unknown as SettingFields

  const extra: string[] = []
  if (config.requestTimeoutMs < config.headersTimeoutMs) {
    extra.push(`HERALD_REQUEST_TIMEOUT_MS=${config.requestTimeoutMs}: expected at least HERALD_HEADERS_TIMEOUT_MS (${config.headersTimeoutMs})`)
  }
  for (const pattern of config.privateTopics) {
    const problem = patternProblem(pattern)
    if (problem !== undefined) extra.push(`HERALD_PRIVATE_TOPICS=${JSON.stringify(valid.HERALD_PRIVATE_TOPICS)}: pattern ${JSON.stringify(pattern)}: ${problem}`)
  }
  let jwt: JwtConfig | undefined
  try {
    jwt = jwtConfig(valid)
  } catch (error) {
    extra.push((error as Error).message)
  }
  let tls: TlsConfig | undefined
  try {
    tls = tlsConfig(valid)
  } catch (error) {
    extra.push((error as Error).message)
  }
  let redisTls: RedisTlsConfig | undefined
  try {
    redisTls = redisTlsConfig(valid)
  } catch (error) {
    extra.push((error as Error).message)
  }
  if (jwt === undefined && (config.privateTopics.length > 0 || !config.publicSubscribe) && extra.length === 0) {
    extra.push('HERALD_PRIVATE_TOPICS / HERALD_PUBLIC_SUBSCRIBE: private topics need HERALD_JWT_SECRET or HERALD_JWT_PUBLIC_KEY to check tokens')
  }
  if (extra.length > 0) throw new ConfigError(extra)

  return { ...config, jwt, tls, redisTls, setVariables: new Set(Object.keys(raw)) }
}

/** Reads HERALD_REDIS_TLS_* and checks, at start, that they fit REDIS_URL, are PEM, and that the key fits the certificate. */
function redisTlsConfig (env: Env): RedisTlsConfig | undefined {
  const url = env.REDIS_URL
  if (url?.startsWith(SENTINEL_SCHEME) === true) {
    try {
      parseSentinelUrl(url)
    } catch (error) {
      throw new Error(`REDIS_URL=${JSON.stringify(url.replace(/\/\/[^@/]*@/, '//…@'))}: ${(error as Error).message}`)
    }
  }
  if (url !== undefined) {
    const problem = modeProblem(url, env.HERALD_REDIS_MODE as RedisModeSetting)
    if (problem !== undefined) throw new Error(problem)
  }
  const { HERALD_REDIS_TLS_CA: caPath, HERALD_REDIS_TLS_CERT: certPath, HERALD_REDIS_TLS_KEY: keyPath } = env
  if (caPath === undefined && certPath === undefined && keyPath === undefined) return undefined
  if (url === undefined || !url.startsWith('rediss://')) {
    throw new Error('HERALD_REDIS_TLS_CA, HERALD_REDIS_TLS_CERT, HERALD_REDIS_TLS_KEY: set only with a rediss:// REDIS_URL')
  }
  if ((certPath === undefined) !== (keyPath === undefined)) throw new Error('HERALD_REDIS_TLS_CERT and HERALD_REDIS_TLS_KEY: set both, or neither')
  const redisTls: RedisTlsConfig = {}
  if (caPath !== undefined) {
    const ca = readPemFile('HERALD_REDIS_TLS_CA', caPath)
    try {
      // eslint-disable-next-line no-new
      new X509Certificate(ca)
    } catch {
      throw new Error(`HERALD_REDIS_TLS_CA=${JSON.stringify(caPath)}: expected a PEM CA certificate`)
    }
    redisTls.ca = ca
  }
  if (certPath !== undefined && keyPath !== undefined) {
    const cert = readPemFile('HERALD_REDIS_TLS_CERT', certPath)
    const key = readPemFile('HERALD_REDIS_TLS_KEY', keyPath)
    let certificate: X509Certificate
    try {
      certificate = new X509Certificate(cert)
    } catch {
      throw new Error(`HERALD_REDIS_TLS_CERT=${JSON.stringify(certPath)}: expected a PEM certificate`)
    }
    let privateKey: ReturnType<typeof createPrivateKey>
    try {
      privateKey = createPrivateKey(key)
    } catch {
      throw new Error(`HERALD_REDIS_TLS_KEY=${JSON.stringify(keyPath)}: expected an unencrypted PEM private key`)
    }
    if (!certificate.checkPrivateKey(privateKey)) throw new Error('HERALD_REDIS_TLS_KEY: the key does not belong to the certificate in HERALD_REDIS_TLS_CERT')
    redisTls.cert = cert
    redisTls.key = key
  }
  return redisTls
}

/** Reads the certificate and key files and checks, at start, that they are PEM and belong together. */
function tlsConfig (env: Env): TlsConfig | undefined {
  const certPath = env.HERALD_TLS_CERT
  const keyPath = env.HERALD_TLS_KEY
  if (certPath === undefined && keyPath === undefined) return undefined
  if (certPath === undefined || keyPath === undefined) throw new Error('HERALD_TLS_CERT and HERALD_TLS_KEY: set both, or neither')
  const cert = readPemFile('HERALD_TLS_CERT', certPath)
  const key = readPemFile('HERALD_TLS_KEY', keyPath)
  let certificate: X509Certificate
  try {
    certificate = new X509Certificate(cert)
  } catch {
    throw new Error(`HERALD_TLS_CERT=${JSON.stringify(certPath)}: expected a PEM certificate`)
  }
  let privateKey: ReturnType<typeof createPrivateKey>
  try {
    privateKey = createPrivateKey(key)
  } catch {
    throw new Error(`HERALD_TLS_KEY=${JSON.stringify(keyPath)}: expected an unencrypted PEM private key`)
  }
  if (!certificate.checkPrivateKey(privateKey)) throw new Error('HERALD_TLS_KEY: the key does not belong to the certificate in HERALD_TLS_CERT')
  return { cert, key }
}

function readPemFile (name: string, path: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    throw new Error(`${name}=${JSON.stringify(path)}: expected a readable PEM file`)
  }
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

/** The README's configuration table, one row per setting: `npm run docs:config` writes it, a test compares it. */
export function configTable (): string {
  const rows = settings.map(({ name, schema }) => {
    const fallback = (schema as { default?: unknown }).default
    const shown = fallback === undefined ? 'unset' : fallback === '' ? 'empty' : `\`${String(fallback)}\``
    return `| \`${name}\` | ${shown} | ${markdownText(descriptionOf(schema))} |`
  })
  return ['| variable | default | what it expects |', '| --- | --- | --- |', ...rows].join('\n')
}

/** Escapes, outside `code`, what Markdown reads as emphasis or a cell break, such as the ** in private/**. */
function markdownText (text: string): string {
  return text.split('`').map((part, index) => index % 2 === 1 ? part : part.replace(/[\\*_|<]/g, '\\$&')).join('`')
}
