/**
 * Open streams per key (a client address, a token subject), each key under the same cap; 0 = no cap.
 * A key leaves the map with its last stream, so the map holds only clients with open streams.
 */
export class StreamQuota {
  private readonly counts = new Map<string, number>()

  constructor (readonly limit: number) {}

  /** Takes a slot for the key; false, taking nothing, when the key is at the cap. */
  acquire (key: string): boolean {
    const count = this.counts.get(key) ?? 0
    if (this.limit > 0 && count >= this.limit) return false
    this.counts.set(key, count + 1)
    return true
  }

  release (key: string): void {
    const count = this.counts.get(key) ?? 0
    if (count <= 1) this.counts.delete(key)
    else this.counts.set(key, count - 1)
  }

  /** Open streams of a key. */
  count (key: string): number {
    return this.counts.get(key) ?? 0
  }
}
