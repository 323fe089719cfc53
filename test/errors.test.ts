import Fastify, { type FastifyInstance } from 'fastify'
import assert from 'node:assert/strict'
import { STATUS_CODES } from 'node:http'
import { Writable } from 'node:stream'
import { test, type TestContext } from 'node:test'
import errorHandlerPlugin, { type ErrorBody } from '../plugins/error-handler.js'
import {
  BatchTooLargeError, BrokerUnavailableError, DataTooDeepError, ForbiddenError, HostRefusedError, RateLimitedError, TokenInvalidError,
  STREAM_REFUSALS, TokenMissingError, TooManyConnectionsError, TooManyTopicsError
} from '../src/errors.js'
import { UNAVAILABLE_REASONS } from '../src/protocol.js'

interface LogLine {
  level: number
  reqId?: string
  msg?: string
  [key: string]: unknown
}

/** What one error, thrown by a route, must come back as. */
interface Case {
  name: string
  error: () => Error
  statusCode: number
  code?: string
  message: string
  headers?: Record<string, string>
}

const cases: Case[] = [
  { name: 'a missing token', error: () => new TokenMissingError('send a token'), statusCode: 401, code: 'HERALD_TOKEN_MISSING', message: 'send a token', headers: { 'www-authenticate': 'Bearer' } },
  { name: 'a bad token', error: () => new TokenInvalidError('the token has expired'), statusCode: 401, code: 'HERALD_TOKEN_INVALID', message: 'the token has expired', headers: { 'www-authenticate': 'Bearer' } },
  { name: 'a forbidden topic', error: () => new ForbiddenError('this token may not publish to topic "b"'), statusCode: 403, code: 'HERALD_FORBIDDEN', message: 'this token may not publish to topic "b"' },
  { name: 'a refused host', error: () => new HostRefusedError('"evil.example"'), statusCode: 403, code: 'HERALD_HOST_REFUSED', message: 'open development mode answers only requests to a loopback host (localhost, 127.0.0.1, [::1]) or one in HERALD_ALLOWED_HOSTS, not "evil.example"' },
  { name: 'data too deep', error: () => new DataTooDeepError('body/data', 64), statusCode: 400, code: 'HERALD_DATA_TOO_DEEP', message: 'body/data nests deeper than 64 levels' },
  { name: 'a batch event too deep', error: () => new DataTooDeepError('body/events/3/data', 64), statusCode: 400, code: 'HERALD_DATA_TOO_DEEP', message: 'body/events/3/data nests deeper than 64 levels' },
  { name: 'a batch too large', error: () => new BatchTooLargeError(1000, 1001), statusCode: 413, code: 'HERALD_BATCH_TOO_LARGE', message: 'a batch may hold at most 1000 events (HERALD_MAX_BATCH_EVENTS); this one has 1001' },
  { name: 'too many topics', error: () => new TooManyTopicsError(3, 4), statusCode: 400, code: 'HERALD_TOO_MANY_TOPICS', message: 'a stream may subscribe to at most 3 topics; this one asked for 4' },
  { name: 'a rate limit', error: () => new RateLimitedError(5, 'minute', 42), statusCode: 429, code: 'HERALD_RATE_LIMITED', message: 'at most 5 topic-events (an event to N topics counts N) per minute; retry in 42 s' },
  { name: 'a lost broker, with its cause', error: () => new BrokerUnavailableError('Redis is unreachable; the event was not stored', { cause: new Error('connect ECONNREFUSED') }), statusCode: 503, code: 'HERALD_BROKER_UNAVAILABLE', message: 'Redis is unreachable; the event was not stored', headers: { 'retry-after': '1' } },
  { name: 'a lost broker', error: () => new BrokerUnavailableError('Redis is unreachable'), statusCode: 503, code: 'HERALD_BROKER_UNAVAILABLE', message: 'Redis is unreachable', headers: { 'retry-after': '1' } },
  { name: 'a full instance', error: () => new TooManyConnectionsError(3), statusCode: 503, code: 'HERALD_TOO_MANY_CONNECTIONS', message: 'this instance serves at most 3 streams; retry shortly or elsewhere', headers: { 'retry-after': '5' } },
  { name: 'a bug', error: () => new TypeError('cannot read secret.password of undefined'), statusCode: 500, message: 'internal error' },
  { name: 'a 5xx from elsewhere', error: () => Object.assign(new Error('upstream 10.0.0.7 refused'), { statusCode: 502, code: 'UPSTREAM' }), statusCode: 502, message: 'internal error' },
  { name: 'an unavailable dependency', error: () => Object.assign(new Error('pool of db-7 exhausted'), { statusCode: 503 }), statusCode: 503, message: 'internal error', headers: { 'retry-after': '1' } },
  { name: 'a status that is no error', error: () => Object.assign(new Error('moved to /elsewhere'), { statusCode: 302 }), statusCode: 500, message: 'internal error' }
]

/** A bare Fastify with only the error handler plugin, whose pino lines land in `lines`. */
async function bare (t: TestContext, routes: (fastify: FastifyInstance) => void): Promise<{ app: FastifyInstance, lines: LogLine[] }> {
  const lines: LogLine[] = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as LogLine)
      done()
    }
  })
  const app = Fastify({ logger: { level: 'info', stream }, requestIdHeader: 'x-request-id' })
  t.after(() => app.close())
  await app.register(errorHandlerPlugin)
  routes(app)
  await app.ready()
  return { app, lines }
}

function assertShape (body: ErrorBody, statusCode: number, code: string | undefined, message: string): void {
  assert.deepEqual(body, { statusCode, error: STATUS_CODES[statusCode], ...(code === undefined ? {} : { code }), message })
}

const hasStack = (line: LogLine): boolean => JSON.stringify(line).includes('"stack"')

test('each kind of error gets its status, the standard reason phrase, its code and message, and its headers', async (t) => {
  const { app, lines } = await bare(t, (fastify) => {
    fastify.get('/throw/:index', async (request) => {
      throw (cases[Number((request.params as { index: string }).index)] as Case).error()
    })
  })
  const outages = new Set<string>()
  for (const [index, expected] of cases.entries()) {
    const response = await app.inject({ url: `/throw/${index}`, headers: { 'x-request-id': `case-${index}` } })
    assert.equal(response.statusCode, expected.statusCode, expected.name)
    assertShape(response.json(), expected.statusCode, expected.code, expected.message)
    for (const name of ['www-authenticate', 'retry-after']) {
      assert.equal(response.headers[name], expected.headers?.[name], `${expected.name}: ${name}`)
    }

    const logged = lines.filter((line) => line.reqId === `case-${index}` && line.level >= 30 && line.msg !== 'incoming request' && line.msg !== 'request completed')
    // An operational 5xx again while its first is unresolved (no success since) is counted, not logged again.
    const repeat = expected.statusCode >= 500 && expected.code !== undefined && outages.has(expected.code)
    if (expected.statusCode >= 500 && expected.code !== undefined) outages.add(expected.code)
    assert.equal(logged.length, repeat ? 0 : 1, `${expected.name}: ${repeat ? 'counted in its outage, not logged again' : 'one line about the error'}`)
    if (repeat) continue
    const line = logged[0] as LogLine
    if (expected.statusCode < 500) {
      // A client's mistake: info, what was refused and why, and no stack anywhere in the line.
      assert.equal(line.level, 30, expected.name)
      assert.deepEqual({ code: line.code, statusCode: line.statusCode, message: line.message }, { code: expected.code, statusCode: expected.statusCode, message: expected.message }, expected.name)
      assert.equal(line.err, undefined, expected.name)
      assert.equal(hasStack(line), false, `${expected.name}: no stack in ${JSON.stringify(line)}`)
    } else if (expected.code !== undefined) {
      // Expected and operational: a warning, not an error.
      assert.equal(line.level, 40, expected.name)
      assert.equal(line.code, expected.code, expected.name)
    } else {
      // A bug: logged in full for whoever fixes it, but nothing of it in the reply.
      assert.equal(line.level, 50, expected.name)
      assert.equal(typeof (line.err as { stack?: unknown } | undefined)?.stack, 'string', expected.name)
      assert.equal(response.body.includes((expected.error().message)), false, `${expected.name}: the reply hides the detail`)
    }
  }
  const legacy = lines.find((line) => line.reqId === `case-${cases.findIndex((item) => item.name.includes('with its cause'))}` && line.level === 40)
  assert.match(String(legacy?.cause), /ECONNREFUSED/, 'the broker\'s cause is logged (its message: a stack would say nothing more)')
})

test('errors thrown from a hook, a sent error, and an unknown route go through the same handler', async (t) => {
  const { app, lines } = await bare(t, (fastify) => {
    fastify.addHook('onRequest', async (request) => {
      if (request.headers.host === 'evil.example') throw new HostRefusedError('"evil.example"')
    })
    fastify.get('/sent', async (_request, reply) => await reply.send(new ForbiddenError('sent, not thrown')))
  })
  const hooked = await app.inject({ url: '/sent', headers: { host: 'evil.example' } })
  assert.equal(hooked.statusCode, 403)
  assert.equal(hooked.json().code, 'HERALD_HOST_REFUSED')

  const sent = await app.inject({ url: '/sent' })
  assertShape(sent.json(), 403, 'HERALD_FORBIDDEN', 'sent, not thrown')

  const missing = await app.inject({ method: 'DELETE', url: '/nowhere/at/all?token=secret', headers: { 'x-request-id': 'missing' } })
  assert.equal(missing.statusCode, 404)
  assertShape(missing.json(), 404, 'HERALD_NOT_FOUND', 'no route for DELETE /nowhere/at/all')
  const line = lines.find((logged) => logged.reqId === 'missing' && logged.msg === 'request rejected')
  assert.equal(line?.level, 30)
  assert.equal(hasStack(line as LogLine), false)
})

test("Fastify's own 4xx keep their status, code and message", async (t) => {
  const { app, lines } = await bare(t, (fastify) => {
    fastify.post('/echo', {
      bodyLimit: 32,
      schema: { body: { type: 'object', required: ['topic'], properties: { topic: { type: 'string' } } } }
    }, async (request) => request.body)
  })
  const post = async (payload: string, contentType = 'application/json', id = 'fastify') =>
    await app.inject({ method: 'POST', url: '/echo', payload, headers: { 'content-type': contentType, 'x-request-id': id } })

  const invalid = await post('{}', undefined, 'invalid')
  assertShape(invalid.json(), 400, 'FST_ERR_VALIDATION', 'body must have required property \'topic\'')
  const malformed = await post('{"topic"')
  assert.equal(malformed.statusCode, 400)
  assert.equal(malformed.json().code, 'FST_ERR_CTP_INVALID_JSON_BODY')
  assert.equal(malformed.json().error, STATUS_CODES[400])
  const large = await post(JSON.stringify({ topic: 'x'.repeat(64) }))
  assert.equal(large.statusCode, 413)
  assert.equal(large.json().error, STATUS_CODES[413])
  assert.match(large.json().message, /too large/i)
  const media = await post('<topic/>', 'application/xml')
  assert.equal(media.statusCode, 415)
  assertShape(media.json(), 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', 'Unsupported Media Type')

  const rejected = lines.filter((line) => line.msg === 'request rejected')
  assert.equal(rejected.length, 4)
  for (const line of rejected) assert.equal(hasStack(line), false, JSON.stringify(line))
  assert.equal(rejected.find((line) => line.reqId === 'invalid')?.code, 'FST_ERR_VALIDATION')
})

test('every reason of a stream refusal is one the wire protocol (and so the browser client) names, and each is used', () => {
  assert.deepEqual(Object.values(STREAM_REFUSALS).map(({ reason }) => reason).sort(), [...UNAVAILABLE_REASONS].sort())
})
