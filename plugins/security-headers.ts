import type { FastifyReply } from 'fastify'
import fp from 'fastify-plugin'

declare module 'fastify' {
  interface FastifyReply {
    /** Adds the headers that only mean something on an HTML page (CSP, frame options, HSTS over TLS). */
    pageHeaders(): FastifyReply
  }
}

/** Scripts, styles and connections from this origin only; no inline code, no plugins, never framed. */
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "object-src 'none'",
  "base-uri 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'"
].join('; ')

/**
 * Document-level policies, for HTML pages only. X-Frame-Options agrees with frame-ancestors for old browsers.
 * Helmet's legacy extras are gone: X-XSS-Protection (no browser has the auditor any more), X-Download-Options
 * (Internet Explorer 8) and X-Permitted-Cross-Domain-Policies (Flash, Acrobat).
 */
const PAGE_HEADERS = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'origin-agent-cluster': '?1',
  'referrer-policy': 'no-referrer',
  'x-dns-prefetch-control': 'off'
}

/** Browsers ignore HSTS over plain HTTP, and a plain-HTTP Herald must not promise TLS for its whole host. */
const STRICT_TRANSPORT_SECURITY = 'max-age=31536000; includeSubDomains'

/**
 * Security headers, all computed once at start: nosniff on every reply, the document policies (CSP, frame
 * options, HSTS when served over TLS) only where a page is served, through `reply.pageHeaders()`.
 */
export default fp(async (fastify) => {
  // Every reply: JSON, errors, and event streams (the stream route copies the reply's headers when it hijacks).
  // No Cross-Origin-Resource-Policy: browsers check it only on no-cors requests; fetch and EventSource make CORS
  // requests, so CORS (plugins/cors.ts) alone decides which origins read the API.
  fastify.addHook('onRequest', (_request, reply, done) => {
    reply.header('x-content-type-options', 'nosniff')
    done()
  })

  fastify.decorateReply('pageHeaders', function (this: FastifyReply) {
    this.headers(PAGE_HEADERS)
    if (this.request.protocol === 'https') this.header('strict-transport-security', STRICT_TRANSPORT_SECURITY)
    return this
  })
}, { name: 'security-headers' })
