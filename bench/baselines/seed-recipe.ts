/**
 * The seed recipe, for comparison: the classic "Flask + Redis pub/sub + SSE" answer written with Herald's own
 * libraries (Fastify, ioredis). POST /post takes Herald's publish shape `{topic, data}` and PUBLISHes
 * JSON.stringify(data) to the topic's channel; GET /stream opens ONE NEW Redis subscriber
 * connection PER CLIENT, which is the scaling bug Herald exists to fix. No ids, no history, no resume.
 */
import Fastify from 'fastify'
import { Redis } from 'ioredis'

const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const port = Number(process.env.PORT ?? 8090)
const publisher = new Redis(redisUrl)
const app = Fastify({ logger: false })

app.post<{ Body: { topic: string, data: unknown } }>('/post', async (request, reply) => {
  await publisher.publish(request.body.topic, JSON.stringify(request.body.data))
  return reply.code(202).send({ ok: true })
})

app.get<{ Querystring: { topic: string } }>('/stream', (request, reply) => {
  const subscriber = new Redis(redisUrl)
  reply.hijack()
  reply.raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
  reply.raw.write(': connected\n\n')
  subscriber.on('message', (_channel, message) => reply.raw.write(`data: ${message}\n\n`))
  subscriber.subscribe(request.query.topic).catch(() => reply.raw.destroy())
  reply.raw.on('close', () => subscriber.disconnect())
})

app.get('/health', async () => ({ ok: true }))
await app.listen({ host: '127.0.0.1', port })
