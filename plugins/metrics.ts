import type { FastifyError } from 'fastify'
import fp from 'fastify-plugin'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import { STREAM_REFUSALS } from '../src/errors.js'
import { listenRefusal } from '../src/startup-error.js'
import type { Hub } from '../src/hub/hub.js'
import { REPLAY_KINDS, REPLAY_RESULTS, type HubMetrics } from '../src/hub/hub-metrics.js'
import { packageVersion } from '../src/package-version.js'
import { RESET_REASONS } from '../src/protocol.js'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: HeraldMetrics
  }
  interface FastifyContextConfig {
    /** The publish route: its error answers count as refused publishes. */
    publish?: boolean
    /** A batch publish route: an error answer counts each event of its body as refused. */
    publishBatch?: boolean
  }
}

export type RedisCommand = 'publish' | 'read' | 'ping'

/** What the rest of Herald tells the metrics; everything else is read from the hub when Prometheus scrapes. */
export interface HeraldMetrics {
  readonly registry: Registry
  /** Where `/metrics` listens, once it does; undefined with HERALD_METRICS_PORT=off. */
  address: () => AddressInfo | undefined
  /** One event's publish, by result (a batch tells one per event). */
  published: (result: 'stored' | 'duplicate' | 'refused') => void
  /** A publish request answered with this error status by the route itself, not by a thrown error (a batch that
   * failed part-way): its events are told to `published` one by one. */
  publishRefused: (statusCode: number) => void
  publishDuration: (seconds: number) => void
  /** A live event handed to this instance's streams, published at `publishedAt` (ms, the broker's clock). */
  dispatched: (publishedAt: number) => void
  redisCommand: (command: RedisCommand, milliseconds: number) => void
  redisReconnected: () => void
  redisSubscriberDropped: () => void
  /** A message on a Herald channel that Herald did not write, dropped. */
  redisForeignMessage: () => void
  /** What the hub tells of replays. */
  hub: HubMetrics
  /** An HTTP/2 connection closed at once for misbehaving (src/server.ts). */
  http2SessionClosed: (reason: 'rapid-reset' | 'session-error') => void
}

/** Seconds: from a fraction of a millisecond (a local publish) to the command timeout and beyond. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]
/** Why a stream may end; the label values of herald_streams_closed_total, fixed so the series exist from the start. */
const END_REASONS = ['client-closed', 'server-closing', 'draining', 'token-expired', 'slow-client', 'stalled', 'failed'] as const
const DROP_REASONS = ['slow-client', 'stalled'] as const
/** Seconds: a replay from one empty read to minutes of history paged to a slow client. */
const REPLAY_BUCKETS = [0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10, 60, 300]
/** Why a publish was refused, by its status: the label values of herald_publish_refusals_total. */
const PUBLISH_REFUSALS: Readonly<Record<number, string>> = {
  400: 'invalid',
  401: 'unauthenticated',
  403: 'forbidden',
  413: 'too-large',
  415: 'not-json',
  429: 'rate-limited',
  503: 'unavailable'
}
/** Any other status (a server fault). */
const OTHER_REFUSAL = 'error'
/**
 * prom-client's defaults that promtool check metrics refuses: gauges named `_total`, which Prometheus reserves for
 * counters. The same figures, by type, are the gauges without the suffix (nodejs_active_handles and so on): sum them.
 */
const MISNAMED_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']

/**
 * Prometheus metrics (prom-client): the process's defaults plus Herald's own, `herald_*`. Counts that change on
 * every delivery live in the hub as plain numbers and are read at scrape time, so the delivery path pays
 * nothing for them; the few counted here happen once per request. No label takes a topic, client or token:
 * every label has a fixed, small set of values.
 *
 * Served on a listener of its own (HERALD_METRICS_PORT, default 9464, on HERALD_METRICS_HOST): Prometheus
 * reaches it on the internal network while the public port, which browsers and balancers see, never serves
 * it, so it needs no token.
 */
export default fp(async (fastify) => {
  const config = fastify.config
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  for (const name of MISNAMED_DEFAULTS) registry.removeSingleMetric(name)
  const registers = [registry]
  const hub = (): Hub => fastify.hub

  // Read from the hub at scrape time.
  gauge('herald_streams_open', 'Open event streams on this instance.', function () { this.set(hub().streamCount) })
  gauge('herald_topics_active', 'Topics this instance listens to (at least one open stream subscribes).', function () { this.set(hub().topicCount) })
  gauge('herald_subscriptions', 'Subscriptions to topics on this instance: a stream of three topics counts three.', function () { this.set(hub().subscriptionCount) })
  gauge('herald_draining', '1 while this instance drains before it exits (not ready), else 0.', function () { this.set(hub().draining ? 1 : 0) })
  counter('herald_deliveries_total', 'Events handed to streams (live and replayed; one per event per stream).', [], function () { this.reset(); this.inc(hub().eventsSent) })
  counter('herald_bytes_out_total', 'Bytes handed to streams: events, notices, heartbeats.', [], function () { this.reset(); this.inc(hub().bytesSent) })
  counter('herald_streams_closed_total', 'Streams ended, by reason.', ['reason'], function () { setAll(this, END_REASONS, hub().streamsEnded) })
  counter('herald_clients_dropped_total', 'Streams reset because their client fell too far behind (slow-client) or stopped reading (stalled).', ['reason'], function () { setAll(this, DROP_REASONS, hub().streamsEnded) })
  counter('herald_resets_sent_total', 'herald.reset notices sent, by reason.', ['reason'], function () { setAll(this, RESET_REASONS, hub().resetsSent) })

  new Gauge({ name: 'herald_build_info', help: 'Always 1; its labels say which Herald (package.json version) runs on which Node.', labelNames: ['version', 'node'], registers })
    .set({ version: packageVersion(), node: process.version }, 1)

  // Counted as they happen.
  const published = counter('herald_events_published_total', 'Events published, by result: stored, duplicate (an idempotency key seen before), refused (any error answer); a batch counts each of its events.', ['result'])
  for (const result of ['stored', 'duplicate', 'refused']) published.inc({ result }, 0)
  const publishRefusals = counter('herald_publish_refusals_total', 'Publish requests refused, by reason: invalid (400), unauthenticated (401), forbidden (403), too-large (413), not-json (415), rate-limited (429), unavailable (503: the broker), error (a server fault).', ['reason'])
  for (const reason of [...Object.values(PUBLISH_REFUSALS), OTHER_REFUSAL]) publishRefusals.inc({ reason }, 0)
  const replaysStarted = counter('herald_replays_started_total', 'Catch-ups from history started, by kind: resume (a client came back with an id), new (a new stream\'s read of what came since its arrival), resync (after Redis was lost or an epoch changed).', ['kind'])
  const replaysFinished = counter('herald_replays_finished_total', 'Catch-ups from history finished, by kind and result: done, client-left, failed (retried).', ['kind', 'result'])
  const replaySeconds = new Histogram({ name: 'herald_replay_duration_seconds', help: 'Catch-ups from history, from start to finish (paged under the client\'s backpressure), by kind.', labelNames: ['kind'], buckets: REPLAY_BUCKETS, registers })
  for (const kind of REPLAY_KINDS) {
    replaysStarted.inc({ kind }, 0)
    for (const result of REPLAY_RESULTS) replaysFinished.inc({ kind, result }, 0)
    replaySeconds.zero({ kind })
  }
  const slotWaitSeconds = new Histogram({ name: 'herald_replay_slot_wait_seconds', help: 'How long each history read waited for one of the instance\'s read slots (0 when one was free).', buckets: [0, ...LATENCY_BUCKETS], registers })
  const refusals = counter('herald_stream_refusals_total', 'Streams refused with a retryable herald.unavailable, by reason.', ['reason'])
  for (const { reason } of Object.values(STREAM_REFUSALS)) refusals.inc({ reason }, 0)
  const authFailures = counter('herald_auth_failures_total', 'Requests refused for their token or host, by status (401 or 403).', ['status'])
  for (const status of ['401', '403']) authFailures.inc({ status }, 0)
  const rateLimited = counter('herald_rate_limited_total', 'Publishes refused by the rate limit.', [])
  const http2Closed = counter('herald_http2_sessions_closed_total', 'HTTP/2 connections closed at once for misbehaving, by reason: rapid-reset (streams reset as soon as opened), session-error (Node\'s limits: invalid frames, refused streams, protocol errors).', ['reason'])
  for (const reason of ['rapid-reset', 'session-error']) http2Closed.inc({ reason }, 0)
  const publishSeconds = new Histogram({ name: 'herald_publish_duration_seconds', help: 'Publish requests, from arrival to reply.', buckets: LATENCY_BUCKETS, registers })
  const lagSeconds = new Histogram({ name: 'herald_dispatch_lag_seconds', help: 'From an event\'s publish (the broker\'s clock) to this instance handing it to its streams.', buckets: LATENCY_BUCKETS, registers })

  const redis = config.redisUrl === undefined ? undefined : redisMetrics()

  fastify.addHook('onError', async (request, _reply, error: FastifyError) => {
    const code = typeof error.code === 'string' ? error.code : ''
    const refusal = request.routeOptions.config.eventStream === true ? STREAM_REFUSALS[code] : undefined
    if (refusal !== undefined) refusals.inc({ reason: refusal.reason })
    if (error.statusCode === 401 || error.statusCode === 403) authFailures.inc({ status: String(error.statusCode) })
    if (code === 'HERALD_RATE_LIMITED') rateLimited.inc()
    if (request.routeOptions.config.publish === true) {
      published.inc({ result: 'refused' }, request.routeOptions.config.publishBatch === true ? batchSize(request.body) : 1)
      publishRefusals.inc({ reason: PUBLISH_REFUSALS[error.statusCode ?? 500] ?? OTHER_REFUSAL })
    }
  })

  // Label children bound once: a publish then costs no label lookup.
  const publishedAs = { stored: published.labels({ result: 'stored' }), duplicate: published.labels({ result: 'duplicate' }), refused: published.labels({ result: 'refused' }) }
  const commandSeconds = redis === undefined
    ? undefined
    : { publish: redis.commandSeconds.labels({ command: 'publish' }), read: redis.commandSeconds.labels({ command: 'read' }), ping: redis.commandSeconds.labels({ command: 'ping' }) }
  let server: Server | undefined
  const metrics: HeraldMetrics = {
    registry,
    address: () => {
      const address = server?.address()
      return typeof address === 'object' && address !== null ? address : undefined
    },
    published: (result) => publishedAs[result].inc(),
    publishRefused: (statusCode) => publishRefusals.inc({ reason: PUBLISH_REFUSALS[statusCode] ?? OTHER_REFUSAL }),
    publishDuration: (seconds) => publishSeconds.observe(seconds),
    dispatched: (publishedAt) => lagSeconds.observe(Math.max(0, Date.now() - publishedAt) / 1000),
    redisCommand: (command, milliseconds) => commandSeconds?.[command].observe(milliseconds / 1000),
    redisReconnected: () => redis?.reconnects.inc(),
    redisSubscriberDropped: () => redis?.subscriberDrops.inc(),
    redisForeignMessage: () => redis?.foreignMessages.inc(),
    hub: {
      replayStarted: (kind) => replaysStarted.inc({ kind }),
      replayFinished: (kind, result, seconds) => {
        replaysFinished.inc({ kind, result })
        replaySeconds.observe({ kind }, seconds)
      },
      replaySlotWaited: (seconds) => slotWaitSeconds.observe(seconds)
    },
    http2SessionClosed: (reason) => http2Closed.inc({ reason })
  }
  fastify.decorate('metrics', metrics)

  const port = config.metricsPort
  if (port !== undefined) {
    const host = config.metricsHost ?? config.host
    try {
      server = await listen(registry, host, port)
    } catch (error) {
      throw listenRefusal(error, { port: 'HERALD_METRICS_PORT', host: config.metricsHost === undefined ? 'HOST' : 'HERALD_METRICS_HOST' }, host, port) ?? error
    }
    fastify.log.info({ address: metrics.address() }, 'metrics served at /metrics')
    fastify.addHook('onClose', async () => {
      server?.closeAllConnections()
      await new Promise((resolve) => server?.close(resolve))
    })
  }

  function gauge (name: string, help: string, collect: (this: Gauge) => void): Gauge {
    return new Gauge({ name, help, registers, collect })
  }

  function counter<Label extends string> (name: string, help: string, labelNames: Label[], collect?: (this: Counter<Label>) => void): Counter<Label> {
    return new Counter({ name, help, labelNames, registers, ...(collect === undefined ? {} : { collect }) })
  }

  function redisMetrics (): { commandSeconds: Histogram<'command'>, reconnects: Counter, subscriberDrops: Counter, foreignMessages: Counter } {
    gauge('herald_redis_up', '1 while Redis answers a PING within the command timeout and the subscriber is subscribed, else 0.', async function () {
      const answer = await fastify.redisAnswers()
      this.set(answer?.ok === true && hub().health().status === 'ok' ? 1 : 0)
    })
    const commandSeconds = new Histogram({ name: 'herald_redis_command_duration_seconds', help: 'Redis commands by kind: publish (the publish script), read (a history page), ping.', labelNames: ['command'], buckets: LATENCY_BUCKETS, registers })
    return {
      commandSeconds,
      reconnects: counter('herald_redis_reconnects_total', 'Times a Redis connection (publisher or subscriber) came back after it was lost.', []),
      subscriberDrops: counter('herald_redis_subscriber_drops_total', 'Times the subscriber connection was lost or closed by Redis (e.g. its pub/sub output buffer limit).', []),
      foreignMessages: counter('herald_redis_foreign_messages_total', 'Messages on a Herald channel that Herald did not write (another client PUBLISHed there), dropped.', [])
    }
  }
}, { name: 'metrics', dependencies: ['config'] })

/** The events of a batch body, as far as it was read: 1 when it was not (too large, not JSON, no events array). */
function batchSize (body: unknown): number {
  const events = (body as { events?: unknown } | null | undefined)?.events
  return Array.isArray(events) && events.length > 0 ? events.length : 1
}

/** Sets a counter's series to totals kept elsewhere, one per `reasons` value (0 before its first count). */
function setAll (counter: Counter<'reason'>, reasons: readonly string[], totals: ReadonlyMap<string, number>): void {
  counter.reset()
  for (const reason of reasons) counter.inc({ reason }, totals.get(reason) ?? 0)
}

async function listen (registry: Registry, host: string, port: number): Promise<Server> {
  const server = createServer((request, response) => {
    if (request.url !== '/metrics' || (request.method !== 'GET' && request.method !== 'HEAD')) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: metrics are at /metrics\n')
      return
    }
    registry.metrics().then((text) => {
      response.writeHead(200, { 'content-type': registry.contentType }).end(text)
    }, (error: unknown) => {
      response.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${(error as Error).message}\n`)
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host, port }, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return server
}
