import fastifyHelmet from '@fastify/helmet'
import fp from 'fastify-plugin'

/**
 * Security headers on every response (nosniff among them) and a strict CSP for the demo pages: scripts,
 * styles and connections from this origin only. Streams consumed by other origins stay readable (CORP).
 */
export default fp(async (fastify) => {
  await fastify.register(fastifyHelmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        connectSrc: ["'self'"],
        imgSrc: ["'self'", 'data:'],
        objectSrc: ["'none'"],
        baseUri: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"]
      }
    },
    crossOriginResourcePolicy: { policy: 'cross-origin' }
  })
}, { name: 'security-headers' })
