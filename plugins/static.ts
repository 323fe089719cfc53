import fastifyStatic from '@fastify/static'
import fp from 'fastify-plugin'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

/**
 * Serves the demo pages in public/ at the root and the console (public/console/) at /console (the HTML pages get
 * the page-only security headers), and the browser client's build (client/dist/, `npm run build`) at /client/:
 * /client/herald-client.js and the shared worker it starts, /client/herald-worker.js.
 */
export default fp(async (fastify) => {
  // Two levels up from plugins/ (source) or dist/plugins/ (built) is not the same place: look for the project.
  const here = fileURLToPath(new URL('.', import.meta.url))
  const project = here.endsWith('/dist/plugins/') ? new URL('../../', import.meta.url) : new URL('../', import.meta.url)
  await fastify.register(fastifyStatic, {
    root: fileURLToPath(new URL('public/', project)),
    index: ['index.html'],
    setHeaders: (reply, path) => {
      if (path.endsWith('.html')) reply.pageHeaders()
    }
  })
  // The console's address has no slash: its assets are linked from /console/ by absolute paths.
  fastify.get('/console', async (_request, reply) => await reply.sendFile('console/index.html'))
  const client = fileURLToPath(new URL('client/dist/', project))
  if (!existsSync(client)) fastify.log.warn({ path: client }, 'the browser client is not built (npm run build): /client/ answers 404')
  await fastify.register(fastifyStatic, {
    root: client,
    prefix: '/client/',
    decorateReply: false,
    // The modules only: not the type declarations beside them.
    allowedPath: (path) => path.endsWith('.js')
  })
}, { name: 'static', dependencies: ['security-headers'] })
