import { publish } from '../helper.js'

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

export interface PublishLoopOptions {
  headers?: Record<string, string>
  /**
   * Publish as a careful backend does: each event with an idempotency key, retried (up to 3 more times) when its
   * answer is lost or is not a 202, so a retry of an event that was stored gets the same id, never a second event.
   */
  retry?: boolean
}

/** Publishes (through a balancer, say) until stopped, one at a time, keeping each publish's start and outcome. */
export function publishLoop (url: string, topic: string, { headers = {}, retry = false }: PublishLoopOptions = {}) {
  const results: Array<{ startedAt: number, status: number, id?: string, body?: unknown, attempts: number }> = []
  const state = { running: true }
  const done = (async () => {
    for (let seq = 0; state.running; seq++) {
      const startedAt = Date.now()
      const body = retry ? { topic, data: { seq }, idempotencyKey: `loop-${startedAt}-${seq}` } : { topic, data: { seq } }
      for (let attempt = 1; ; attempt++) {
        let result: typeof results[number]
        try {
          const reply = await publish(url, body, headers)
          result = reply.status === 202 ? { startedAt, status: reply.status, id: String(reply.body.id), attempts: attempt } : { startedAt, status: reply.status, body: reply.body, attempts: attempt }
        } catch (error) {
          // A balancer's error page is not JSON: publish() throws on it, as on a connection that failed.
          result = { startedAt, status: 0, body: String(error), attempts: attempt }
        }
        if (result.status === 202 || !retry || attempt === 4) {
          results.push(result)
          break
        }
        await sleep(50)
      }
      await sleep(5)
    }
  })()
  return {
    results,
    accepted: () => results.flatMap((result) => result.id === undefined ? [] : [result.id]),
    stop: async () => { state.running = false; await done }
  }
}
