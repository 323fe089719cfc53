import type { StoredEvent } from './transport.js'

/**
 * A topic's retained events in a fixed-size ring: the memory broker's counterpart of a Redis stream
 * with MAXLEN. It remembers the largest id it dropped, as Redis 7 does (`max-deleted-entry-id`).
 */
export class TopicHistory {
  private readonly ring: Array<StoredEvent | undefined>
  private start = 0
  private size = 0
  trimmedThrough = 0
  /** The first id this history ever held, its newest id, and when its newest event was published (ms). */
  firstId = 0
  newestId = 0
  newestTime = 0

  constructor (readonly capacity: number) {
    this.ring = new Array<StoredEvent | undefined>(capacity)
  }

  append (event: StoredEvent): void {
    if (this.firstId === 0) this.firstId = event.id
    this.newestId = event.id
    this.newestTime = event.time
    if (this.capacity === 0) {
      this.trimmedThrough = event.id
      return
    }
    if (this.size === this.capacity) {
      this.trimmedThrough = (this.ring[this.start] as StoredEvent).id
      this.ring[this.start] = event
      this.start = (this.start + 1) % this.capacity
    } else {
      this.ring[(this.start + this.size) % this.capacity] = event
      this.size++
    }
  }

  /**
   * Retained events with an id above `afterId`, oldest first: at most `limit`, and past the first no more than
   * `maxBytes` of data; `full` when it stopped at either while more remained.
   */
  after (afterId: number, limit = Infinity, maxBytes = Infinity): { events: StoredEvent[], full: boolean } {
    const events: StoredEvent[] = []
    let bytes = 0
    for (let index = 0; index < this.size; index++) {
      const event = this.ring[(this.start + index) % this.capacity] as StoredEvent
      if (event.id <= afterId) continue
      if (events.length >= limit || (events.length > 0 && bytes + event.data.length > maxBytes)) return { events, full: true }
      bytes += event.data.length
      events.push(event)
    }
    return { events, full: false }
  }
}
