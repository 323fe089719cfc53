import { STATUS_CODES } from 'node:http'
import { Type, type TSchema } from 'typebox'
import { HostRefusedError } from './errors.js'
import { ErrorReply } from './schemas.js'

/** One way a route can fail: an error it throws, built as it would be (so its code, status and message are real), and when. */
export interface Failure {
  error: { code: string, statusCode?: number | undefined, message: string }
  when: string
}

/** Response headers a status carries, as @fastify/swagger reads them from a response schema's `headers`. */
const HEADERS_BY_STATUS: Readonly<Record<number, Record<string, { type: 'string', description: string }>>> = {
  401: { 'www-authenticate': { type: 'string', description: '`Bearer`' } },
  429: { 'retry-after': { type: 'string', description: 'seconds to wait before retrying' } },
  503: { 'retry-after': { type: 'string', description: 'seconds to wait before retrying' } }
}

/**
 * A route's error replies by status, for its `response` schema: each status's body is the error handler's
 * `{ statusCode, error, code, message }`, its description lists every code it can carry and when, `code`
 * enumerates them, and each code has an example built from the error itself. Serialization is unchanged: the
 * body is the same object for every status, and a string `enum` only documents.
 */
export function errorReplies (failures: readonly Failure[]): Record<number, TSchema> {
  const byStatus = new Map<number, Failure[]>()
  for (const failure of failures) {
    const status = failure.error.statusCode
    if (status === undefined || status < 400 || status > 599) throw new TypeError(`${failure.error.code} has no error status`)
    byStatus.set(status, [...(byStatus.get(status) ?? []), failure])
  }
  const replies: Record<number, TSchema> = {}
  for (const [status, group] of [...byStatus].sort(([a], [b]) => a - b)) {
    const codes = [...new Set(group.map((failure) => failure.error.code))]
    const examples: Record<string, { summary: string, value: object }> = {}
    for (const { error, when } of group) {
      examples[error.code] ??= { summary: when.replaceAll('`', ''), value: { statusCode: status, error: STATUS_CODES[status] ?? 'Error', code: error.code, message: error.message } }
    }
    replies[status] = Type.Object({
      ...ErrorReply.properties,
      statusCode: Type.Integer({ const: status }),
      code: Type.Optional(Type.String({ enum: codes }))
    }, {
      'x-response-description': group.map(({ error, when }) => `\`${error.code}\`: ${when}`).join('\n\n'),
      'x-examples': examples,
      ...(HEADERS_BY_STATUS[status] === undefined ? {} : { headers: HEADERS_BY_STATUS[status] })
    })
  }
  return replies
}

/** Every route can answer this in open development mode (the check is an onRequest hook of plugins/auth.ts). */
export const hostRefused: Failure = {
  error: new HostRefusedError('"evil.example"'),
  when: 'open development mode, and the Host header is not a loopback name'
}
