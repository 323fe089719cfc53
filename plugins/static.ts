import fastifyStatic from '@fastify/static'
import fp from 'fastify-plugin'
import { fileURLToPath } from 'node:url'

/**
 * Serves the demo pages in public/ at the root, and the console (public/console/) at /console; the HTML pages get
 * the page-only security headers.
 */
export default fp(async (fastify) => {
  // Two levels up from plugins/ (source) or dist/plugins/ (built) is not the same place: look for public/.
  const here = fileURLToPath(new URL('.', import.meta.url))
  const root = here.endsWith('/dist/plugins/') ? new URL('../../public/', import.meta.url) : new URL('../public/', import.meta.url)
  await fastify.register(fastifyStatic, {
    root: fileURLToPath(root),
    index: ['index.html'],
    setHeaders: (reply, path) => {
      if (path.endsWith('.html')) reply.pageHeaders()
    }
  })
  // The console's address has no slash: its assets are linked from /console/ by absolute paths.
  fastify.get('/console', async (_request, reply) => await reply.sendFile('console/index.html'))
}, { name: 'static', dependencies: ['security-headers'] })
