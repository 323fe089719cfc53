/** Herald's event ids, `<epoch>-<seq>`: ordered by `seq` within one epoch, never comparable across epochs. */
const EVENT_ID = /^([0-9a-z]{1,16})-(0|[1-9]\d{0,15})$/

export function parseEventId (id: string): { epoch: string, seq: number } | undefined {
  const match = EVENT_ID.exec(id)
  if (match === null) return undefined
  return { epoch: match[1] as string, seq: Number(match[2]) }
}

/** `0` asks for the oldest retained event: it comes before every id. */
export const START = '0'

/** Negative, 0 or positive as `a` comes before, is, or comes after `b`; undefined across epochs or for other ids. */
export function compareEventIds (a: string, b: string): number | undefined {
  if (a === START || b === START) return a === b ? 0 : a === START ? -1 : 1
  const x = parseEventId(a)
  const y = parseEventId(b)
  if (x === undefined || y === undefined || x.epoch !== y.epoch) return undefined
  return x.seq - y.seq
}

/**
 * True when an event is news to a reader at `position`: no position yet, a later id, or an id of another epoch
 * (a new epoch's events are all news; Herald says so with `herald.reset` first).
 */
export function isNews (id: string, position: string | undefined): boolean {
  if (position === undefined) return true
  const order = compareEventIds(id, position)
  return order === undefined || order > 0
}

/** The earlier of two positions of one epoch; `a` when they cannot be compared. */
export function earlier (a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined) return b
  if (b === undefined) return a
  const order = compareEventIds(a, b)
  return order !== undefined && order > 0 ? b : a
}
