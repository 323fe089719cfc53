import type { StoredEvent } from './transport.js'

/**
 * A topic's retained events in a fixed-size ring: the memory broker's counterpart of a Redis stream with MAXLEN.
 */
export class TopicHistory {
  private readonly ring: Array<StoredEvent | undefined>
  private start = 0
  private size = 0

  constructor (readonly capacity: number) {
    this.ring = new Array<StoredEvent | undefined>(capacity)
  }

  /** The oldest sequence number held, or undefined when it holds none. */
  get oldest (): number | undefined {
    return this.size === 0 ? undefined : (this.ring[this.start] as StoredEvent).seq
  }

  append (event: StoredEvent): void {
    if (this.capacity === 0) return
    if (this.size === this.capacity) {
      this.ring[this.start] = event
      this.start = (this.start + 1) % this.capacity
    } else {
      this.ring[(this.start + this.size) % this.capacity] = event
      this.size++
    }
  }

  /**
   * Retained events with a sequence number above `after`, oldest first: at most `limit`, and past the first no more
   * than `maxBytes` of data; `full` when it stopped at either while more remained.
   */
  after (after: number, limit = Infinity, maxBytes = Infinity): { events: StoredEvent[], full: boolean } {
    const events: StoredEvent[] = []
    let bytes = 0
    for (let index = 0; index < this.size; index++) {
      const event = this.ring[(this.start + index) % this.capacity] as StoredEvent
      if (event.seq <= after) continue
      if (events.length >= limit || (events.length > 0 && bytes + event.data.length > maxBytes)) return { events, full: true }
      bytes += event.data.length
      events.push(event)
    }
    return { events, full: false }
  }
}
