import fp from 'fastify-plugin'
import type { Config } from '../src/config.js'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

/** Decorates the configuration parsed at start, so plugins and routes read one typed object. */
export default fp<{ config: Config }>(async (fastify, options) => {
  fastify.decorate('config', options.config)
}, { name: 'config' })
