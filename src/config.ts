import { Type, type Static } from 'typebox'
import { Value } from 'typebox/value'

/**
 * The environment Herald reads, as one TypeBox schema. Every variable has a default or is optional,
 * so a fresh machine starts with no configuration at all (embedded memory broker on loopback).
 * Each `description` is what the variable expects: it is the text of the error for a bad value.
 */
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
  HERALD_IDEMPOTENCY_TTL_MS: Integer('milliseconds an idempotency key is remembered, at least 1', 1, 86_400_000)
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
    problems.set(name, `${name}=${JSON.stringify(raw[name])}: expected ${(schema as { description?: string }).description ?? 'a valid value'}`)
  }
  if (problems.size > 0) throw new ConfigError([...problems.values()])

  const valid = env as Env
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
    idempotencyTtlMs: valid.HERALD_IDEMPOTENCY_TTL_MS
  }
}
