// The API reference: /openapi.json is a valid OpenAPI 3.1 document that says what Herald really answers, the
// README's examples agree with it, and /docs renders it in a browser under the pages' CSP.
import { compileErrors, validate } from '@readme/openapi-parser'
import { Ajv2020 } from 'ajv/dist/2020.js'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { test } from 'node:test'
import * as errors from '../src/errors.js'
import { MAX_STREAM_ID_LENGTH } from '../src/schemas.js'
import { SseParser, type ParsedEvent } from '../src/sse/parser.js'
import { build, publish } from './helper.js'
import { launchChromium } from './helpers/browser.js'
import { openStream } from './helpers/sse-client.js'
import { SECRET, token } from './helpers/tokens.js'

interface Media { schema: object, examples?: Record<string, { summary?: string, value: unknown }> }
interface Reply { description: string, content?: Record<string, Media>, headers?: Record<string, unknown> }
interface Operation {
  summary?: string
  description?: string
  tags?: string[]
  parameters?: Array<{ name: string, in: string }>
  security?: Array<Record<string, string[]>>
  requestBody?: { content: Record<string, Media> }
  responses: Record<string, Reply>
}
interface OpenApiDocument {
  openapi: string
  info: { title: string, version: string, description?: string }
  paths: Record<string, Record<string, Operation>>
  components: {
    securitySchemes: Record<string, { type: string, scheme?: string, in?: string, name?: string }>
    responses?: Record<string, Reply>
  }
}

/** Redocly's CLI, run with this Node (its bin is a script). */
const REDOCLY = join(dirname(createRequire(import.meta.url).resolve('@redocly/cli/package.json')), 'bin/cli.js')

const ajv = new Ajv2020({ strict: true, allErrors: true })
// Annotations OpenAPI adds to JSON Schema 2020-12; they constrain nothing.
ajv.addKeyword('example')

async function fetchDocument (url: string): Promise<OpenApiDocument> {
  const response = await fetch(`${url}/openapi.json`)
  assert.equal(response.status, 200)
  assert.match(String(response.headers.get('content-type')), /^application\/json/)
  return await response.json() as OpenApiDocument
}

function operation (document: OpenApiDocument, method: string, path: string): Operation {
  const found = document.paths[path]?.[method.toLowerCase()]
  assert.ok(found !== undefined, `${method} ${path} is documented`)
  return found
}

/** Asserts that a value matches a schema of the document, with every reason when it does not. */
function assertMatches (schema: object, value: unknown, what: string): void {
  const check = ajv.compile(schema)
  assert.ok(check(value), `${what}: ${ajv.errorsText(check.errors)} in ${JSON.stringify(value)}`)
}

/** Every operation of the document, with its method and path. */
function operations (document: OpenApiDocument): Array<{ method: string, path: string, operation: Operation }> {
  return Object.entries(document.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, operation]) => ({ method: method.toUpperCase(), path, operation })))
}

/** The codes a documented reply enumerates. */
function documentedCodes (reply: Reply | undefined): string[] {
  const schema = reply?.content?.['application/json']?.schema as { properties?: { code?: { enum?: string[] } } } | undefined
  return schema?.properties?.code?.enum ?? []
}

function parseStream (text: string): { events: ParsedEvent[], comments: number } {
  const events: ParsedEvent[] = []
  const parser = new SseParser((event) => events.push(event))
  parser.push(text)
  return { events, comments: parser.comments }
}

test('/openapi.json is a valid OpenAPI 3.1 document, and each example matches its schema', async (t) => {
  const { url } = await build(t)
  const document = await fetchDocument(url)
  assert.equal(document.openapi, '3.1.0')
  const result = await validate(structuredClone(document) as Parameters<typeof validate>[0])
  assert.ok(result.valid, result.valid ? '' : compileErrors(result))

  assert.deepEqual(Object.keys(document.paths).filter((path) => path.startsWith('/v1/')).sort(), ['/v1/events', '/v1/events/batch', '/v1/stats', '/v1/stream'])
  for (const path of ['/health', '/health/live', '/health/ready']) assert.ok(document.paths[path]?.get !== undefined, `${path} is documented`)
  for (const path of ['/openapi.json', '/docs', '/docs/json', '/']) assert.equal(document.paths[path], undefined, `${path} is not an API route`)

  let examples = 0
  const replies = [
    ...operations(document).flatMap(({ method, path, operation }) => [
      ...Object.entries(operation.requestBody?.content ?? {}).map(([type, media]) => ({ where: `${method} ${path} body ${type}`, media })),
      ...Object.entries(operation.responses).flatMap(([status, reply]) =>
        Object.entries(reply.content ?? {}).map(([type, media]) => ({ where: `${method} ${path} ${status} ${type}`, media })))
    ]),
    ...Object.entries(document.components.responses ?? {}).flatMap(([name, reply]) =>
      Object.entries(reply.content ?? {}).map(([type, media]) => ({ where: `${name} ${type}`, media })))
  ]
  for (const { where, media } of replies) {
    for (const [name, example] of Object.entries(media.examples ?? {})) {
      assertMatches(media.schema, example.value, `${where} example ${name}`)
      examples++
    }
  }
  assert.ok(examples >= 15, `${examples} examples checked`)

  for (const { method, path, operation } of operations(document)) {
    assert.ok(operation.summary !== undefined && operation.tags !== undefined && operation.tags.length > 0, `${method} ${path} has a summary and tags`)
  }
})

test("redocly's recommended rules find nothing but the health operations' missing 4xx, which they never send", async (t) => {
  const { url } = await build(t)
  const document = await fetchDocument(url)
  const directory = await mkdtemp(join(tmpdir(), 'herald-openapi-'))
  t.after(() => rm(directory, { recursive: true, force: true }))
  const file = join(directory, 'openapi.json')
  await writeFile(file, JSON.stringify(document, null, 2))
  // No redocly.yaml anywhere up from the temporary directory: the built-in recommended ruleset.
  const lint = spawnSync(process.execPath, [REDOCLY, 'lint', file, '--format=json'], { cwd: directory, encoding: 'utf8', env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' } })
  assert.match(lint.stderr, /using built in recommended configuration/)
  const { totals, problems } = JSON.parse(lint.stdout) as {
    totals: { errors: number, warnings: number, ignored: number }
    problems: Array<{ ruleId: string, severity: string, message: string, location: Array<{ pointer: string }> }>
  }
  const found = problems.map((problem) => `${problem.severity} ${problem.ruleId} ${problem.location[0]?.pointer ?? ''}: ${problem.message}`)
  // /health, /health/live and /health/ready answer no 4xx (public, and the Host check lets them through):
  // documenting one to please the rule would document an answer they never send, which the test above forbids.
  const accepted = ['/health', '/health/live', '/health/ready'].map((path) =>
    `warn operation-4xx-response #/paths/${path.replaceAll('/', '~1')}/get/responses: Operation must have at least one \`4XX\` response.`)
  assert.deepEqual(found.sort(), accepted.sort(), `redocly lint (rc ${String(lint.status)}): ${lint.stderr}`)
  assert.equal(totals.errors, 0)
  assert.equal(lint.status, 0)
})

test('publishing is documented with its body, examples, every status and its codes, and the bearer token', async (t) => {
  const { url } = await build(t)
  const document = await fetchDocument(url)
  const publishing = operation(document, 'POST', '/v1/events')
  assert.deepEqual(publishing.security, [{ bearerToken: [] }])
  assert.deepEqual(document.components.securitySchemes.bearerToken, { ...document.components.securitySchemes.bearerToken, type: 'http', scheme: 'bearer' })
  const body = publishing.requestBody?.content['application/json']
  assert.ok(body !== undefined)
  assert.ok(Object.keys(body.examples ?? {}).length >= 2, 'request examples')
  assert.ok(publishing.parameters?.some((parameter) => parameter.in === 'header' && parameter.name === 'idempotency-key'))
  assert.deepEqual(Object.keys(publishing.responses).sort(), ['202', '400', '401', '403', '413', '415', '429', '503'])
  assert.ok(Object.keys(publishing.responses['202']?.content?.['application/json']?.examples ?? {}).length >= 1, 'reply examples')
  assert.deepEqual(documentedCodes(publishing.responses['400']).sort(), ['FST_ERR_CTP_EMPTY_JSON_BODY', 'FST_ERR_CTP_INVALID_JSON_BODY', 'FST_ERR_VALIDATION', 'HERALD_DATA_TOO_DEEP', 'HERALD_INVALID_EVENT'])
  assert.deepEqual(documentedCodes(publishing.responses['401']).sort(), ['HERALD_TOKEN_INVALID', 'HERALD_TOKEN_MISSING'])
  assert.deepEqual(documentedCodes(publishing.responses['503']), ['HERALD_BROKER_UNAVAILABLE', 'HERALD_REDIS_FULL'])
  for (const status of ['429', '503']) assert.ok(publishing.responses[status]?.headers?.['retry-after'] !== undefined, `${status} has Retry-After`)
  assert.ok(publishing.responses['401']?.headers?.['www-authenticate'] !== undefined)
})

test('the stream is documented as text/event-stream, with its frames, resume position, refusals and tokens', async (t) => {
  const { url } = await build(t)
  const document = await fetchDocument(url)
  const stream = operation(document, 'GET', '/v1/stream')
  const ok = stream.responses['200']
  const media = ok?.content?.['text/event-stream']
  assert.ok(media !== undefined, 'the 200 answer is text/event-stream')
  assert.deepEqual(Object.keys(ok?.content ?? {}), ['text/event-stream'])
  for (const frame of ['`id:', '`event:', '`data:', '`retry:', 'herald.reset', 'herald.unavailable', 'heartbeat', 'Last-Event-ID', 'lastEventId']) {
    assert.ok(ok?.description.includes(frame), `the 200 description tells of ${frame}`)
  }
  // Each refusal the error handler answers in band is named with its reason.
  for (const [code, { reason }] of Object.entries(errors.STREAM_REFUSALS)) {
    assert.ok(ok?.description.includes(`\`${reason}\` (${code}`), `${code} (${reason}) in the 200 description`)
  }
  // The examples are streams a browser parses into the events they describe.
  const examples = Object.fromEntries(Object.entries(media.examples ?? {}).map(([name, example]) => [name, parseStream(String(example.value))]))
  assert.deepEqual(examples.events?.events.map((event) => [event.event, event.id]), [['message', 'm5x8k2qz3f-17']])
  assert.ok((examples.events?.comments ?? 0) >= 2, 'the opening comment and a heartbeat')
  assert.deepEqual(examples.reset?.events.map((event) => event.event), ['herald.reset', 'message'])
  assert.deepEqual(examples.refused?.events.map((event) => event.event), ['herald.unavailable'])

  const parameters = (stream.parameters ?? []).map((parameter) => `${parameter.in} ${parameter.name}`).sort()
  assert.deepEqual(parameters, ['header last-event-id', 'query envelope', 'query lastEventId', 'query topic'])
  // access_token is a security scheme, not a plain parameter; the empty requirement leaves public topics open.
  assert.deepEqual(stream.security, [{}, { bearerToken: [] }, { tokenCookie: [] }, { accessToken: [] }])
  assert.deepEqual(document.components.securitySchemes.accessToken, { ...document.components.securitySchemes.accessToken, type: 'apiKey', in: 'query', name: 'access_token' })
  assert.deepEqual(document.components.securitySchemes.tokenCookie, { ...document.components.securitySchemes.tokenCookie, type: 'apiKey', in: 'cookie', name: 'herald_token' })
  assert.deepEqual(Object.keys(stream.responses).sort(), ['200', '400', '401', '403'])

  // The real answer has the documented media type.
  const client = await openStream(`${url}/v1/stream?topic=chat`)
  t.after(() => client.close())
  assert.equal(client.status, 200)
  assert.equal(String(client.headers['content-type']).split(';')[0], 'text/event-stream')
})

test('every HERALD_* code declared in src/errors.ts is in the document', async (t) => {
  const { url } = await build(t)
  const document = await fetchDocument(url)
  const declared = Object.values(errors as Record<string, unknown>)
    .filter((value): value is new () => Error & { code: string } => typeof value === 'function')
    .map((ErrorClass) => new ErrorClass().code)
  assert.ok(declared.length >= 12, `${declared.length} codes declared`)
  const replies = operations(document).flatMap(({ operation }) => Object.values(operation.responses))
  const enumerated = new Set(replies.flatMap(documentedCodes))
  const streamReply = operation(document, 'GET', '/v1/stream').responses['200']?.description ?? ''
  for (const code of declared) {
    assert.ok(code.startsWith('HERALD_'), code)
    // Stream refusals are answered in band (a 200 stream), so the stream's 200 names them; the not-found answer
    // belongs to no operation, so the introduction tells it; the rest are codes of error replies.
    const told = (code in errors.STREAM_REFUSALS && streamReply.includes(code)) || (code === 'HERALD_NOT_FOUND' && document.info.description?.includes(`\`${code}\``) === true)
    assert.ok(enumerated.has(code) || told, `${code} is documented`)
  }
  for (const code of enumerated) assert.match(code, /^(HERALD|FST)_/)
})

test("Herald's real answers are documented: each status and code is the operation's, and each body matches its schema", async (t) => {
  const secured = await build(t, {
    HERALD_JWT_SECRET: SECRET,
    HERALD_PRIVATE_TOPICS: 'users/**',
    HERALD_RATE_LIMIT_PER_MINUTE: '8',
    HERALD_MAX_BODY_BYTES: '1024',
    HERALD_MAX_TOPICS_PER_STREAM: '2'
  })
  const open = await build(t)
  const document = await fetchDocument(secured.url)
  const publisher = token({ publish: ['chat/*'] })
  const subscriber = token({ subscribe: ['users/42/**'] })
  const json = { 'content-type': 'application/json', authorization: `Bearer ${publisher}` }

  const answers: Array<{ name: string, method: string, path: string, response: Response }> = []
  const ask = async (name: string, method: string, path: string, target: string, init: RequestInit = {}): Promise<void> => {
    answers.push({ name, method, path, response: await fetch(target, { method, ...init }) })
  }
  const events = `${secured.url}/v1/events`
  await ask('a publish', 'POST', '/v1/events', events, { headers: json, body: JSON.stringify({ topic: 'chat/lobby', data: 'hi' }) })
  await ask('an unknown field', 'POST', '/v1/events', events, { headers: json, body: JSON.stringify({ topic: 'chat/lobby', data: 1, extra: true }) })
  await ask('malformed JSON', 'POST', '/v1/events', events, { headers: json, body: '{"topic"' })
  await ask('an empty body', 'POST', '/v1/events', events, { headers: json, body: '' })
  let deep: unknown = 0
  for (let level = 0; level < 70; level++) deep = [deep]
  await ask('data too deep', 'POST', '/v1/events', events, { headers: json, body: JSON.stringify({ topic: 'chat/lobby', data: deep }) })
  await ask('no token', 'POST', '/v1/events', events, { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ topic: 'chat/lobby', data: 1 }) })
  await ask('a bad token', 'POST', '/v1/events', events, { headers: { ...json, authorization: 'Bearer nonsense' }, body: JSON.stringify({ topic: 'chat/lobby', data: 1 }) })
  await ask('a forbidden topic', 'POST', '/v1/events', events, { headers: json, body: JSON.stringify({ topic: 'billing', data: 1 }) })
  await ask('a large body', 'POST', '/v1/events', events, { headers: json, body: JSON.stringify({ topic: 'chat/lobby', data: 'x'.repeat(2000) }) })
  await ask('text', 'POST', '/v1/events', events, { headers: { 'content-type': 'text/plain', authorization: `Bearer ${publisher}` }, body: 'hi' })
  const stream = `${secured.url}/v1/stream`
  await ask('no topic', 'GET', '/v1/stream', stream)
  await ask('too many topics', 'GET', '/v1/stream', `${stream}?topic=a&topic=b&topic=c`)
  await ask('a long Last-Event-ID', 'GET', '/v1/stream', `${stream}?topic=a`, { headers: { 'last-event-id': 'x'.repeat(MAX_STREAM_ID_LENGTH + 1) } })
  await ask('a private topic without a token', 'GET', '/v1/stream', `${stream}?topic=users/42/inbox`)
  await ask('a private topic with a bad token', 'GET', '/v1/stream', `${stream}?topic=users/42/inbox&access_token=nonsense`)
  await ask('a private topic outside the token', 'GET', '/v1/stream', `${stream}?topic=users/43/inbox&access_token=${subscriber}`)
  await ask('a stream', 'GET', '/v1/stream', `${stream}?topic=chat`)
  for (const path of ['/health', '/health/live', '/health/ready', '/v1/stats']) await ask(path, 'GET', path, `${secured.url}${path}`)
  for (const [path, method] of [['/v1/events', 'POST'], ['/v1/stream', 'GET'], ['/health', 'GET'], ['/health/live', 'GET'], ['/health/ready', 'GET'], ['/v1/stats', 'GET']] as const) {
    // Open development mode answers loopback names only; fetch cannot set Host, so the header rides a raw request.
    answers.push({ name: `a foreign host on ${path}`, method, path, response: await rawRequest(open.url, method, `${path}?topic=chat`, 'evil.example') })
  }
  // The eight publishes above that carried the token (valid or not) spent its budget of 8 a minute.
  await ask('over the rate limit', 'POST', '/v1/events', events, { headers: json, body: JSON.stringify({ topic: 'chat/lobby', data: 1 }) })
  // Batches, with a token subject of their own: its own rate-limit budget.
  const batches = `${secured.url}/v1/events/batch`
  const batcher = { 'content-type': 'application/json', authorization: `Bearer ${token({ publish: ['chat/*'], subject: 'batcher' })}` }
  const batch = (...events: unknown[]) => JSON.stringify({ events })
  await ask('a batch', 'POST', '/v1/events/batch', batches, { headers: batcher, body: batch({ topic: 'chat/lobby', data: 1 }) })
  await ask('a batch with a bad event', 'POST', '/v1/events/batch', batches, { headers: batcher, body: batch({ topic: 'chat/lobby', data: 1 }, { topic: 'chat/lobby' }) })
  await ask('a batch without a token', 'POST', '/v1/events/batch', batches, { headers: { 'content-type': 'application/json' }, body: batch({ topic: 'chat/lobby', data: 1 }) })
  await ask('a batch with a forbidden topic', 'POST', '/v1/events/batch', batches, { headers: batcher, body: batch({ topic: 'chat/lobby', data: 1 }, { topic: 'billing', data: 1 }) })
  await ask('a large batch', 'POST', '/v1/events/batch', batches, { headers: batcher, body: batch({ topic: 'chat/lobby', data: 'x'.repeat(2000) }) })
  await ask('a batch as text', 'POST', '/v1/events/batch', batches, { headers: { ...batcher, 'content-type': 'text/plain' }, body: 'hi' })
  await ask('a batch over the rate limit', 'POST', '/v1/events/batch', batches, { headers: batcher, body: batch(...Array.from({ length: 9 }, (_, index) => ({ topic: 'chat/lobby', data: index }))) })
  const draining = await build(t, { HERALD_DRAIN_MS: '0' })
  await draining.app.drain()
  await ask('a draining instance', 'GET', '/health/ready', `${draining.url}/health/ready`)

  const seen = new Set<string>()
  const sent = new Set<string>()
  for (const { name, method, path, response } of answers) {
    const documented = operation(document, method, path).responses[String(response.status)]
    const type = String(response.headers.get('content-type')).split(';')[0] ?? ''
    assert.ok(documented !== undefined, `${name}: ${method} ${path} documents ${response.status}`)
    const media = documented.content?.[type]
    assert.ok(media !== undefined, `${name}: ${response.status} documents ${type}`)
    sent.add(`${method} ${path} ${response.status}`)
    if (type !== 'application/json') {
      await response.body?.cancel()
      continue
    }
    const body = await response.json() as { code?: string }
    assertMatches(media.schema, body, `${name}: ${method} ${path} ${response.status}`)
    seen.add(`${response.status} ${body.code ?? ''}`)
  }
  assert.deepEqual([...seen].sort(), [
    '200 ', '202 ', '400 FST_ERR_CTP_EMPTY_JSON_BODY', '400 FST_ERR_CTP_INVALID_JSON_BODY', '400 FST_ERR_VALIDATION',
    '400 HERALD_DATA_TOO_DEEP', '400 HERALD_TOO_MANY_TOPICS', '401 HERALD_TOKEN_INVALID', '401 HERALD_TOKEN_MISSING',
    '403 HERALD_FORBIDDEN', '403 HERALD_HOST_REFUSED', '413 FST_ERR_CTP_BODY_TOO_LARGE', '415 FST_ERR_CTP_INVALID_MEDIA_TYPE',
    '429 HERALD_RATE_LIMITED', '503 '
  ], 'every case came back as the test expects')

  // And the other way round: every documented status is one the route sends. A publish's 503 needs Redis to be
  // away: test/hung-redis.test.ts and test/errors.test.ts get it and check its body (a batch's:
  // test/publish-batch.test.ts).
  const needsRedis = new Set(['POST /v1/events 503', 'POST /v1/events/batch 503'])
  for (const { method, path, operation: documented } of operations(document)) {
    for (const status of Object.keys(documented.responses)) {
      const answer = `${method} ${path} ${status}`
      assert.ok(sent.has(answer) || needsRedis.has(answer), `${answer} is documented and was sent`)
    }
  }

  // The not-found answer, which no operation owns, is the one the introduction shows.
  const missing = await fetch(`${secured.url}/v1/nowhere`)
  assert.equal(missing.status, 404)
  const body = await missing.json() as { code: string, message: string }
  assert.ok(document.info.description?.includes(JSON.stringify({ ...body, message: 'no route for GET /v1/nowhere' })), 'the introduction shows the not-found body')
})

test('a refused stream is the documented 200 stream, with a documented reason', async (t) => {
  const { url } = await build(t, { HERALD_MAX_CONNECTIONS: '1' })
  const document = await fetchDocument(url)
  const first = await openStream(`${url}/v1/stream?topic=chat`)
  t.after(() => first.close())
  const refused = await fetch(`${url}/v1/stream?topic=chat`)
  assert.equal(refused.status, 200)
  assert.equal(String(refused.headers.get('content-type')).split(';')[0], 'text/event-stream')
  const { events } = parseStream(await refused.text())
  assert.equal(events[0]?.event, 'herald.unavailable')
  const reason = (JSON.parse(events[0]?.data ?? '{}') as { reason?: string }).reason
  assert.ok(operation(document, 'GET', '/v1/stream').responses['200']?.description.includes(`\`${String(reason)}\``), `${String(reason)} is documented`)
})

test('/openapi.json and /docs need no token and do not count against the publish rate limit', async (t) => {
  const { url } = await build(t, { HERALD_JWT_SECRET: SECRET, HERALD_RATE_LIMIT_PER_MINUTE: '1' })
  const publisher = { authorization: `Bearer ${token({ publish: ['chat'] })}` }
  assert.equal((await publish(url, { topic: 'chat', data: 1 }, publisher)).status, 202)
  for (let round = 0; round < 3; round++) {
    for (const path of ['/openapi.json', '/docs', '/docs/json']) assert.equal((await fetch(`${url}${path}`)).status, 200, `${path}, round ${round}`)
  }
  assert.equal((await publish(url, { topic: 'chat', data: 2 }, publisher)).status, 429, 'the publish budget is spent')
})

interface CurlRequest { command: string, method: string, path: string, query: URLSearchParams, headers: Array<[string, string]>, body?: string }

/** The README's curl commands to the API (`/v1/…`): method, path, query, headers and the body each sends. */
function readmeRequests (readme: string): CurlRequest[] {
  const blocks = [...readme.matchAll(/```(?:sh|bash|shell)\n([\s\S]*?)```/g)].map((match) => match[1] ?? '')
  const commands = blocks.flatMap((block) => block.replace(/\\\n\s*/g, ' ').split('\n')).filter((line) => /^\s*curl\b/.test(line))
  return commands.flatMap((command) => {
    const target = /'?(https?:\/\/[^\s']+\/v1\/[^\s']*)'?/.exec(command)
    if (target === null) return []
    const address = new URL(target[1] as string)
    const headers = [...command.matchAll(/-H\s+(?:'([^']*)'|"([^"]*)")/g)].map((match) => {
      const [name = '', ...value] = (match[1] ?? match[2] ?? '').split(':')
      return [name.trim().toLowerCase(), value.join(':').trim()] as [string, string]
    })
    const data = /(?:-d|--data(?:-raw|-binary)?)\s+(?:'([^']*)'|(\S+))/.exec(command)
    const method = /-X\s+([A-Z]+)/.exec(command)?.[1] ?? (data === null ? 'GET' : 'POST')
    const request: CurlRequest = { command, method, path: address.pathname, query: address.searchParams, headers }
    if (data !== null) request.body = data[1] ?? data[2] ?? ''
    return [request]
  })
}

test("the README's and docs/'s curl requests send what the document accepts: publish bodies, stream parameters and headers", async (t) => {
  const { url } = await build(t)
  const document = await fetchDocument(url)
  const pages = ['README.md', ...readdirSync(new URL('../docs/', import.meta.url)).filter((name) => name.endsWith('.md')).map((name) => `docs/${name}`)]
  const texts = await Promise.all(pages.map(async (page) => await readFile(new URL(`../${page}`, import.meta.url), 'utf8')))
  const requests = readmeRequests(texts.join('\n'))
  assert.ok(requests.filter((request) => request.method === 'POST').length >= 2, 'curl publishes found in the README and docs/')
  assert.ok(requests.filter((request) => request.method === 'GET').length >= 2, 'curl streams found in the README and docs/')
  for (const { command, method, path, query, headers, body } of requests) {
    const documented = operation(document, method, path)
    if (method === 'POST') {
      const schema = documented.requestBody?.content['application/json']?.schema
      assert.ok(schema !== undefined, `${method} ${path} documents a JSON body`)
      assert.ok(body !== undefined && /^\{/.test(body), `a JSON body in single quotes: ${command}`)
      assertMatches(schema, JSON.parse(body), command)
    }
    const parameters = (documented.parameters ?? []) as Array<{ name: string, in: string, schema: object }>
    for (const name of new Set(query.keys())) {
      const schemes = (documented.security ?? []).flatMap((requirement) => Object.keys(requirement)).map((scheme) => document.components.securitySchemes[scheme])
      if (schemes.some((scheme) => scheme?.in === 'query' && scheme.name === name)) continue
      const parameter = parameters.find((candidate) => candidate.in === 'query' && candidate.name === name)
      assert.ok(parameter !== undefined, `query parameter ${name} is documented: ${command}`)
      const values = query.getAll(name)
      assertMatches(parameter.schema, values.length === 1 ? values[0] : values, `${name} in ${command}`)
    }
    for (const [name, value] of headers) {
      // Transport headers are HTTP's; the API's own headers must be documented and valid.
      if (['content-type', 'authorization', 'accept'].includes(name)) continue
      const parameter = parameters.find((candidate) => candidate.in === 'header' && candidate.name === name)
      assert.ok(parameter !== undefined, `header ${name} is documented: ${command}`)
      assertMatches(parameter.schema, value, `${name} in ${command}`)
    }
  }
  // The check bites: a drifted body (a misspelt field) or parameter is refused by the same schemas.
  const publishing = operation(document, 'POST', '/v1/events').requestBody?.content['application/json']?.schema as object
  assert.equal(ajv.compile(publishing)({ topics: ['chat'], data: 1 }), false)
  const parsed = readmeRequests("```sh\ncurl -X POST http://h/v1/events \\\n  -H 'content-type: application/json' -d '{\"topic\": \"a\", \"data\": 1}'\ncurl -N -H 'Last-Event-ID: 4' 'http://h/v1/stream?topic=a&topic=b'\n```\n")
  assert.deepEqual(parsed.map(({ method, path, query, headers, body }) => ({ method, path, query: query.getAll('topic'), headers, body })), [
    { method: 'POST', path: '/v1/events', query: [], headers: [['content-type', 'application/json']], body: '{"topic": "a", "data": 1}' },
    { method: 'GET', path: '/v1/stream', query: ['a', 'b'], headers: [['last-event-id', '4']], body: undefined }
  ])
})

test('/docs renders the reference in Chromium under the CSP, showing the publish operation', { timeout: 60_000 }, async (t) => {
  const { url } = await build(t)
  const page = await fetch(`${url}/docs`)
  assert.equal(page.status, 200)
  assert.match(String(page.headers.get('content-security-policy')), /script-src 'self'/)
  assert.equal(page.headers.get('x-frame-options'), 'DENY')
  // Assets are not pages: no CSP on them.
  const script = await fetch(`${url}/docs/static/swagger-initializer.js`)
  assert.equal(script.status, 200)
  assert.equal(script.headers.get('content-security-policy'), null)

  const { browser, close } = await launchChromium()
  t.after(close)
  const tab = await browser.newPage()
  const problems: string[] = []
  tab.on('pageerror', (error) => problems.push(error.message))
  tab.on('console', (message) => { if (message.type() === 'error') problems.push(message.text()) })
  tab.on('requestfailed', (request) => problems.push(`${request.url()} failed`))
  await tab.goto(`${url}/docs`)
  // By its operationId: /v1/events/batch also contains the text /v1/events.
  const publishing = tab.locator('#operations-publish-publishEvent')
  await publishing.waitFor({ timeout: 20_000 })
  assert.match(await publishing.innerText(), /Publish an event/)
  assert.ok(await tab.locator('.opblock-get', { hasText: '/v1/stream' }).count() >= 1, 'the stream operation is shown too')
  await publishing.locator('.opblock-summary').click()
  await tab.locator('.opblock-post .responses-table').first().waitFor({ timeout: 10_000 })
  assert.match(await publishing.innerText(), /HERALD_TOKEN_MISSING/)
  await tab.screenshot({ path: process.env.HERALD_DOCS_SCREENSHOT ?? '/tmp/herald-docs.png', fullPage: false })
  assert.deepEqual(problems, [], 'no script error, CSP violation or failed request')
})

/** A request with a Host header of our choosing (fetch does not let a caller set Host). */
async function rawRequest (base: string, method: string, path: string, host: string): Promise<Response> {
  return await new Promise((resolve, reject) => {
    const outgoing = request(`${base}${path}`, { method, headers: { host, 'content-type': 'application/json' } }, (incoming) => {
      const chunks: Buffer[] = []
      incoming.on('data', (chunk: Buffer) => chunks.push(chunk))
      incoming.on('end', () => resolve(new Response(Buffer.concat(chunks), {
        status: incoming.statusCode,
        headers: Object.entries(incoming.headers).flatMap(([name, value]) => value === undefined ? [] : [[name, String(value)]]) as Array<[string, string]>
      })))
    })
    outgoing.on('error', reject)
    outgoing.end(method === 'POST' ? JSON.stringify({ topic: 'chat', data: 1 }) : undefined)
  })
}
