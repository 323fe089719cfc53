/** How many ids an ArrivalOrder remembers: a replay reaching further back than this may repeat events. */
export const REMEMBERED_IDS = 10_000

/**
 * Event ids are opaque strings, never parsed or compared as text: the order of two ids is the order in which the
 * stream delivered them. An ArrivalOrder remembers the ids received (the newest REMEMBERED_IDS), each with its
 * rank, so that a stream reopened from further back (for a tab that asked for history, or a new leader) is
 * recognised event by event: an id received before is not news to a reader already past it.
 */
export class ArrivalOrder {
  private readonly ranks = new Map<string, number>()
  private next = 0
  /** While a reopened stream replays what it had passed: the rank of the last id it delivered, and where it ends. */
  private catchUp: { cursor: number, until: string } | undefined

  constructor (private readonly capacity = REMEMBERED_IDS) {}

  /**
   * A stream reopens from `from`, further back than `until`, the last id it had delivered: until `until` comes
   * again, ids not received before are older than it, and are placed after the last id the replay delivered.
   */
  beginCatchUp (from: string | undefined, until: string): void {
    const cursor = this.rank(from) ?? this.oldestRank() - 1
    this.catchUp = this.rank(until) === undefined ? undefined : { cursor, until }
  }

  /** The replay will not reach its end as planned (a reset, another reopen): ids are new again from here. */
  endCatchUp (): void {
    this.catchUp = undefined
  }

  /** The id's rank, giving it one if it was not received before. */
  record (id: string): number {
    const known = this.ranks.get(id)
    const catchUp = this.catchUp
    if (known !== undefined) {
      if (catchUp !== undefined) {
        // Forward only: a page of the leader records what its leader recorded, a moment later.
        catchUp.cursor = Math.max(catchUp.cursor, known)
        if (id === catchUp.until) this.catchUp = undefined
      }
      return known
    }
    let rank: number
    if (catchUp !== undefined) {
      // Between the last replayed id and the next one received before: ranks of ids received live are integers.
      catchUp.cursor += CATCH_UP_STEP
      rank = catchUp.cursor
    } else {
      rank = this.next++
    }
    this.ranks.set(id, rank)
    if (this.ranks.size > this.capacity) {
      const oldest = this.ranks.keys().next().value
      if (oldest !== undefined) this.ranks.delete(oldest)
    }
    return rank
  }

  rank (id: string | undefined): number | undefined {
    return id === undefined ? undefined : this.ranks.get(id)
  }

  /**
   * True when the event of rank `rank` is news to a reader at `position`: no position yet, a position this order
   * does not know (a lastEventId from elsewhere: Herald sends only what follows it), or one received earlier.
   */
  isNews (rank: number, position: string | undefined): boolean {
    const at = this.rank(position)
    return at === undefined || rank > at
  }

  /**
   * Where to resume so that both positions get what follows them: the earlier of two known ones, else an unknown
   * one (it may be further back; Herald replays from it, and what a reader already had is skipped by rank).
   */
  earlier (a: string | undefined, b: string | undefined): string | undefined {
    if (a === undefined) return b
    if (b === undefined) return a
    const x = this.rank(a)
    const y = this.rank(b)
    if (x === undefined) return a
    if (y === undefined) return b
    return y < x ? b : a
  }

  private oldestRank (): number {
    let oldest = this.next
    for (const rank of this.ranks.values()) if (rank < oldest) oldest = rank
    return oldest
  }
}

/** Far below 1, so that a million replayed ids fit between two ids received live. */
const CATCH_UP_STEP = 1e-6
