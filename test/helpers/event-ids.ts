import { encodeStreamId, formatPosition, parsePosition, parseStreamId, topicTag } from '../../src/protocol.js'

/**
 * The parts of an event id, `<epoch>-<seq>`: tests compare sequence numbers within one epoch. A plain number
 * (Herald 0.1's ids, before epochs) reads as epoch '', so a test can also be run against the old code.
 */
export function parseId (id: string): { epoch: string, seq: number } {
  if (/^\d+$/.test(id)) return { epoch: '', seq: Number(id) }
  const position = parsePosition(id)
  if (position === undefined) throw new Error(`not an event id: ${JSON.stringify(id)}`)
  return position
}

/** The sequence number of an event id. */
export function seq (id: string): number {
  return parseId(id).seq
}

/** The epoch of an event id. */
export function epochOf (id: string): string {
  return parseId(id).epoch
}

/** True when `a` comes before `b`: same epoch and a smaller sequence number. */
export function before (a: string, b: string): boolean {
  const [x, y] = [parseId(a), parseId(b)]
  return x.epoch === y.epoch && x.seq < y.seq
}

/**
 * The id a stream of `topics` carries at these positions on them (`<epoch>-<seq>` each, '' for a topic it has seen no
 * epoch on): a single-topic stream's id is the position itself, a multi-topic stream's `<tag>:<epoch>-<seq>,…`.
 */
export function streamId (topics: readonly string[], positions: ReadonlyArray<string | undefined>): string {
  return encodeStreamId(topics.map(topicTag), positions.map((position) => position === undefined || position === '' ? { epoch: '', seq: 0 } : parseId(position)))
}

/** An event's id on its own topic, read from a stream's id (a multi-topic stream's carries one per topic). */
export function positionOn (streamId: string, topic: string): string {
  if (!streamId.includes(':')) return streamId
  const read = parseStreamId(streamId, [topic])
  if (read.kind !== 'positions' || !read.positions.has(topic)) return streamId
  const position = read.positions.get(topic)
  return position === null || position === undefined ? '' : formatPosition(position)
}
