/**
 * How many history reads one instance runs at once. Each page of a replay takes a slot for its read and gives it
 * back before it waits for the client to take the page, so a slow reader never holds one, and however many
 * clients resume at once, Redis sees at most this many reads from this instance (publishes go between them).
 */
export class ReplayBudget {
  private running = 0
  private readonly waiting: Array<() => void> = []

  /** `onWait` is told how long each read waited for its slot, in seconds (0 when one was free). */
  constructor (readonly slots: number, private readonly onWait: (seconds: number) => void = () => {}) {}

  /** Runs `read` in a slot, after waiting for one. */
  async run<T> (read: () => Promise<T>): Promise<T> {
    if (this.running >= this.slots) {
      const queuedAt = performance.now()
      await new Promise<void>((resolve) => this.waiting.push(resolve))
      this.onWait((performance.now() - queuedAt) / 1000)
    } else {
      this.running++
      this.onWait(0)
    }
    try {
      return await read()
    } finally {
      const next = this.waiting.shift()
      // The slot passes straight to the next reader, or is freed.
      if (next !== undefined) next()
      else this.running--
    }
  }

  /** Reads running now and reads waiting for a slot. */
  get load (): { running: number, waiting: number } {
    return { running: this.running, waiting: this.waiting.length }
  }
}
