import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { STATUS_CODES } from 'node:http'
import { NotFoundError } from '../src/errors.js'
import { packageVersion } from '../src/package-version.js'

const notFound = new NotFoundError('GET', '/v1/nowhere')

/**
 * The API reference's introduction: what holds for every route. The not-found answer belongs to no operation (a
 * component no operation refers to is an unused one), so it is told here, with the error handler's real body.
 */
const DESCRIPTION = [
  'Herald pushes events from any backend to browsers: publish JSON with `POST /v1/events`, subscribe with',
  '`new EventSource(\'/v1/stream?topic=…\')`.',
  '',
  'Errors are JSON `{ statusCode, error, code, message }`; each operation lists the codes each status can carry.',
  `Any other path or method answers \`404\` \`${notFound.code}\`, e.g.`,
  `\`${JSON.stringify({ statusCode: 404, error: STATUS_CODES[404], code: notFound.code, message: notFound.message })}\`;`,
  'a server fault answers `500` with the bare message `internal error` (its details go to the log).'
].join('\n')

/**
 * The OpenAPI 3.1 document, generated from the route schemas (@fastify/swagger, dynamic mode), at
 * `/openapi.json`, and a rendered reference (Swagger UI) at `/docs`. Register it before the routes: it collects
 * each route as it is added. Both are public (no token) and, like every route but publishing, not rate limited.
 */
export default fp(async (fastify) => {
  await fastify.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Herald', version: packageVersion(), description: DESCRIPTION, license: { name: 'MIT', identifier: 'MIT' } },
      // The instance that serves this document: its URL is whatever the reader reached it by.
      servers: [{ url: '/', description: 'this Herald instance' }],
      tags: [
        { name: 'publish', description: 'send events' },
        { name: 'subscribe', description: 'receive events over Server-Sent Events' },
        { name: 'health', description: 'for balancers and orchestrators' }
      ],
      components: {
        securitySchemes: {
          bearerToken: {
            type: 'http',
            scheme: 'bearer',
            bearerFormat: 'JWT',
            description: 'A JWT signed with `HERALD_JWT_SECRET` (HS256) or the key of `HERALD_JWT_PUBLIC_KEY` (RS256, ES256); ' +
              'its `herald` claim `{ publish, subscribe }` lists topic patterns. `npm run token` makes one for development.'
          },
          tokenCookie: {
            type: 'apiKey',
            in: 'cookie',
            name: fastify.config.cookieName,
            description: 'A subscriber token in a cookie (`HERALD_COOKIE_NAME`), sent by `new EventSource(url, { withCredentials: true })`.'
          },
          accessToken: {
            type: 'apiKey',
            in: 'query',
            name: 'access_token',
            description: 'A subscriber token in the query, for EventSource, which cannot set headers; kept out of the request log.'
          }
        }
      }
    }
  })

  fastify.get('/openapi.json', { schema: { hide: true } }, async () => fastify.swagger())

  await fastify.register(referencePage)
}, { name: 'openapi', dependencies: ['config', 'security-headers'] })

/**
 * Swagger UI at /docs, with its assets from the package (nothing from another origin). Its HTML gets the pages'
 * security headers, CSP included: the UI runs with scripts and styles from this origin only. Encapsulated, so
 * that hook stays on these routes.
 */
async function referencePage (fastify: FastifyInstance): Promise<void> {
  fastify.addHook('onSend', async (_request, reply, payload) => {
    if (String(reply.getHeader('content-type')).startsWith('text/html')) reply.pageHeaders()
    return payload
  })
  await fastify.register(fastifySwaggerUi, {
    routePrefix: '/docs',
    // No top bar: it explores other documents, and its logo is an SVG with an inline <style> the CSP refuses.
    uiConfig: { layout: 'BaseLayout', deepLinking: true, defaultModelsExpandDepth: 0 },
    // The badge would load an image from the Swagger validator's site.
    validatorUrl: false
  })
}
