import fastifyCookie from '@fastify/cookie'
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { Authorizer } from '../src/auth/authorizer.js'
import { isLoopback } from '../src/config.js'
import { HostRefusedError } from '../src/errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    authorizer: Authorizer
    /** The bearer token of a request's Authorization header, if any. */
    bearerToken: (request: FastifyRequest) => string | undefined
    /** A subscriber's token, from (in order) Authorization: Bearer, the token cookie, or `access_token`. */
    subscriberToken: (request: FastifyRequest) => string | undefined
  }
}

/** Decorates the authorizer and the token sources; warns loudly in open development mode. */
export default fp(async (fastify) => {
  const config = fastify.config
  await fastify.register(fastifyCookie)
  const authorizer = new Authorizer({ jwt: config.jwt, privateTopics: config.privateTopics, publicSubscribe: config.publicSubscribe })
  if (authorizer.open) {
    fastify.log.warn('OPEN DEVELOPMENT MODE: no HERALD_JWT_SECRET or HERALD_JWT_PUBLIC_KEY, so anyone who reaches this port may publish. Set a key before exposing Herald.')
  }
  if (authorizer.open && config.allowedHosts !== '*') {
    // Open mode trusts whoever reaches its port. A web page whose DNS name is rebound to Herald's address reaches
    // it too, as its own origin: such requests name the page's host, so only loopback names and the names the
    // operator listed (HERALD_ALLOWED_HOSTS: a balancer's, a container's) pass. HERALD_ALLOW_INSECURE lets open
    // mode bind a public address and leaves this guard on: compose publishes its port on the host's loopback,
    // which rebinding reaches as well. The Host header itself, not request.hostname: that may come from
    // X-Forwarded-Host, which a page can set (HTTP/2: the :authority pseudo-header, which replaces it).
    const allowedHosts = new Set(config.allowedHosts)
    let lastAllowedHost: string | undefined
    fastify.addHook('onRequest', async (request) => {
      // Clients send the same Host on every request: parsing it once (new URL) saves ~3% of a publish.
      const host = request.headers.host ?? authorityOf(request)
      if (host !== undefined && host === lastAllowedHost) return
      // Health checks from balancers and orchestrators name the instance by its address or container name; what
      // they answer (up or not, a count of streams) is no use to a rebinding page.
      if (request.routeOptions.url?.startsWith('/health') === true) return
      const hostname = hostnameOf(host)
      if (hostname !== undefined && (isLoopback(hostname) || allowedHosts.has(hostname))) {
        lastAllowedHost = host
        return
      }
      throw new HostRefusedError(JSON.stringify(hostname ?? host ?? ''))
    })
  }

  const bearerToken = (request: FastifyRequest): string | undefined => {
    const header = request.headers.authorization
    if (header === undefined) return undefined
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header)
    return match?.[1] ?? ''
  }
  // EventSource cannot set headers: a page sends a cookie (withCredentials) or the query parameter instead.
  const subscriberToken = (request: FastifyRequest): string | undefined => {
    const cookie = request.cookies[config.cookieName]
    const query = (request.query as Record<string, unknown>).access_token
    return bearerToken(request) ?? (cookie !== undefined && cookie !== '' ? cookie : undefined) ?? (typeof query === 'string' ? query : undefined)
  }

  fastify.decorate('authorizer', authorizer)
  fastify.decorate('bearerToken', bearerToken)
  fastify.decorate('subscriberToken', subscriberToken)
}, { name: 'auth', dependencies: ['config'] })

/** An HTTP/2 request's `:authority`, which Node keeps among the headers. */
function authorityOf (request: FastifyRequest): string | undefined {
  const authority = request.headers[':authority']
  return typeof authority === 'string' ? authority : undefined
}

function hostnameOf (host: string | undefined): string | undefined {
  if (host === undefined) return undefined
  try {
    return new URL(`http://${host}`).hostname
  } catch {
    return undefined
  }
}
