/**
 * Herald's wire protocol, in one place for the server, the browser client and the tests: what a stream's event ids
 * mean (a position on each of the stream's topics), how they are written and read back, and the in-band notices
 * (`herald.reset`, `herald.unavailable`, from client/src/wire.ts). Pure: no I/O, no Node-only API.
 *
 * A position on a topic is `<epoch>-<seq>`: `seq` grows by one with every event on the topic, within its epoch; an
 * epoch is one life of the topic's counter (base 36 digits). A single-topic stream's id is its topic's position.
 * A multi-topic stream's id carries the position of each of its topics, so `Last-Event-ID` resumes every one of them:
 * `<tag>:<epoch>-<seq>` per topic, comma-separated, in the stream's topic order, where `tag` is 4 base-36 characters
 * of a hash of the topic name (so a client that reconnects with topics added or removed still resumes the others),
 * and `<tag>:` stands for a topic on which the stream has seen no epoch yet. Nchan's multi-channel ids are the
 * precedent.
 */

// The notices and the envelope live in the browser client's package, which can import nothing outside it.
export * from '../client/src/wire.js'

export interface Position {
  /** '' while the topic has no epoch (nothing published, or everything expired). */
  epoch: string
  /** The newest sequence number seen in the epoch (0 before its first event). */
  seq: number
}

const EPOCH = '[0-9a-z]{1,16}'
const SEQ = '0|[1-9]\\d{0,15}'
const POSITION = new RegExp(`^(${EPOCH})-(${SEQ})$`)
const TAGGED = new RegExp(`^([0-9a-z]{4}):(?:(${EPOCH})-(${SEQ}))?$`)
const LEGACY = /^[1-9]\d{0,15}$/
/** The longest position: a 16-digit epoch, '-', a 16-digit sequence number. */
const MAX_POSITION_LENGTH = 16 + 1 + 16

/** The longest id a stream of `topics` topics sends: what the `Last-Event-ID` cap must admit. */
export function maxStreamIdLength (topics: number): number {
  return topics <= 1 ? MAX_POSITION_LENGTH : topics * (4 + 1 + MAX_POSITION_LENGTH) + (topics - 1)
}

/** A topic's tag in multi-topic ids: 4 base-36 characters of its FNV-1a hash. */
export function topicTag (topic: string): string {
  let hash = 0x811c9dc5
  for (let index = 0; index < topic.length; index++) {
    hash ^= topic.charCodeAt(index)
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return (hash % 1_679_616).toString(36).padStart(4, '0')
}

/** Reads one topic's position, `<epoch>-<seq>`; undefined when the text is not one. */
export function parsePosition (text: string): Position | undefined {
  const match = POSITION.exec(text)
  if (match === null) return undefined
  const seq = Number(match[2])
  return Number.isSafeInteger(seq) ? { epoch: match[1] as string, seq } : undefined
}

export function formatPosition (position: Position): string {
  return `${position.epoch}-${position.seq}`
}

/** The id a stream of `topics` sends after an event, given its position on each (in the same order). */
export function encodeStreamId (tags: readonly string[], positions: readonly Position[]): string {
  if (positions.length === 1) return formatPosition(positions[0] as Position)
  let id = ''
  for (let index = 0; index < positions.length; index++) {
    const position = positions[index] as Position
    if (index > 0) id += ','
    id += position.epoch === '' ? `${tags[index] as string}:` : `${tags[index] as string}:${position.epoch}-${position.seq}`
  }
  return id
}

/** Where a `Last-Event-ID` asks each topic of a stream to resume. */
export type ResumeRequest =
  /** `0`: every topic from the start of its retained history. */
  | { kind: 'start' }
  /** Per topic: a position, `null` for a topic that had no epoch yet (all of its current epoch is new), or absent
   * (the client was not subscribed to it: it starts at the head). `ambiguous` topics share a tag: they reset. */
  | { kind: 'positions', positions: Map<string, Position | null>, ambiguous: string[] }
  /** A bare `<epoch>-<seq>` on a multi-topic stream: it belongs to the topic whose current epoch it names. */
  | { kind: 'bare', position: Position }
  /** A plain number from Herald 0.1, or a single id of the global counter Herald 0.2 had: of another epoch. */
  | { kind: 'legacy' }
  | { kind: 'malformed' }

/** Reads a `Last-Event-ID` for a stream of `topics` (in its order). */
export function parseStreamId (value: string, topics: readonly string[]): ResumeRequest {
  const text = value.trim()
  if (text === '0') return { kind: 'start' }
  if (LEGACY.test(text)) return { kind: 'legacy' }
  if (POSITION.test(text)) {
    const position = parsePosition(text)
    if (position === undefined) return { kind: 'malformed' }
    if (topics.length === 1) return { kind: 'positions', positions: new Map([[topics[0] as string, position]]), ambiguous: [] }
    return { kind: 'bare', position }
  }
  const byTag = new Map<string, Position | null>()
  for (const part of text.split(',')) {
    const match = TAGGED.exec(part)
    if (match === null) return { kind: 'malformed' }
    const position = match[2] === undefined ? null : { epoch: match[2], seq: Number(match[3]) }
    if (position !== null && !Number.isSafeInteger(position.seq)) return { kind: 'malformed' }
    byTag.set(match[1] as string, position)
  }
  const tagged = new Map<string, string[]>()
  for (const topic of topics) {
    const tag = topicTag(topic)
    tagged.set(tag, [...(tagged.get(tag) ?? []), topic])
  }
  const positions = new Map<string, Position | null>()
  const ambiguous: string[] = []
  for (const [tag, position] of byTag) {
    const named = tagged.get(tag)
    if (named === undefined) continue
    if (named.length > 1) ambiguous.push(...named)
    else positions.set(named[0] as string, position)
  }
  return { kind: 'positions', positions, ambiguous }
}
