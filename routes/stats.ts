import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { errorReplies, hostRefused } from '../src/error-replies.js'

const StatsReply = Type.Object({
  streams: Type.Integer({ description: 'open event streams on this instance' }),
  topics: Type.Integer({ description: 'topics this instance listens to (at least one open stream subscribes)' }),
  subscriptions: Type.Integer({ description: 'subscriptions to topics: a stream of three topics counts three' }),
  eventsSent: Type.Integer({ description: 'events handed to streams since start, live and replayed' }),
  bytesSent: Type.Integer({ description: 'bytes handed to streams since start: events, notices, heartbeats' })
})

/**
 * GET /v1/stats: this instance's figures, from the hub's tallies, as JSON a page can read (the console polls it
 * for its rates). The Prometheus metrics are richer but on their own port, which a page cannot reach. Counts
 * only, no topic names: as public as /health.
 */
const stats: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/v1/stats', {
    schema: {
      summary: 'Instance figures',
      operationId: 'stats',
      tags: ['health'],
      security: [],
      // Open development mode's Host check covers it, unlike /health*.
      response: { 200: StatsReply, ...errorReplies([hostRefused]) }
    }
  }, async () => {
    const hub = fastify.hub
    return {
      streams: hub.streamCount,
      topics: hub.topicCount,
      subscriptions: hub.subscriptionCount,
      eventsSent: hub.eventsSent,
      bytesSent: hub.bytesSent
    }
  })
}

export default stats
