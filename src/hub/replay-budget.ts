/**
 * How many history reads one instance runs at once. Each page of a replay takes a slot for its read and gives it
 * back before it waits for the client to take the page, so a slow reader never holds one, and however many
 * clients resume at once, Redis sees at most this many reads from this instance (publishes go between them).
 */
export class ReplayBudget {
  private running = 0
  private readonly waiting: Array<() => void> = []

  constructor (readonly slots: number) {}

  /** Runs `read` in a slot, after waiting for one. */
  async run<T> (read: () => Promise<T>): Promise<T> {
    if (this.running >= this.slots) await new Promise<void>((resolve) => this.waiting.push(resolve))
    else this.running++
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
