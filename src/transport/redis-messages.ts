import type { StoredEvent } from './transport.js'

/**
 * Reading what arrives from Redis, checked: any client can PUBLISH on a Herald channel or write a Herald key, so
 * nothing read here is trusted to have Herald's shape. A message or entry that does not is refused with the reason,
 * never thrown on the dispatch path.
 */

const MESSAGE_TAG = 'herald1\n'
const EPOCH = /^[0-9a-z]{1,16}$/
const DIGITS = /^[0-9]{1,16}$/
// eslint-disable-next-line no-control-regex -- control characters are what it looks for
const CONTROL = /[\u0000-\u001f\u007f]/
const TOPICS = /^[A-Za-z0-9_.~:@/-]{1,256}( [A-Za-z0-9_.~:@/-]{1,256})+$/

/**
 * A channel message, as the publish function writes it:
 * `herald1\n<epoch>\n<seq>\n<ms>\n<type>\n<retry>\n<topics>\n<data>`; a string saying what is wrong otherwise.
 */
export function parseChannelMessage (message: string): StoredEvent | string {
  if (!message.startsWith(MESSAGE_TAG)) return 'not a Herald message'
  const fields: string[] = []
  let start = MESSAGE_TAG.length
  for (let index = 0; index < 6; index++) {
    const end = message.indexOf('\n', start)
    if (end === -1) return 'too few lines'
    fields.push(message.slice(start, end))
    start = end + 1
  }
  const [epoch, seq, time, type, retry, topics] = fields as [string, string, string, string, string, string]
  const data = message.slice(start)
  if (!EPOCH.test(epoch)) return 'bad epoch'
  if (!DIGITS.test(seq) || seq === '0') return 'bad sequence number'
  if (!DIGITS.test(time)) return 'bad time'
  if (CONTROL.test(type)) return 'bad type'
  if (retry !== '' && !DIGITS.test(retry)) return 'bad retry'
  if (topics !== '' && !TOPICS.test(topics)) return 'bad topic list'
  if (data === '') return 'no data'
  const event: StoredEvent = { epoch, seq: Number(seq), data, time: Number(time) }
  if (type !== '') event.type = type
  if (retry !== '') event.retry = Number(retry)
  if (topics !== '') event.topics = topics.split(' ')
  return event
}

/** A history entry (an XRANGE reply item: `[id, [field, value, …]]`), or undefined when it is not one of Herald's. */
export function parseHistoryEntry (epoch: string, entry: unknown): StoredEvent | undefined {
  if (!Array.isArray(entry) || typeof entry[0] !== 'string' || !Array.isArray(entry[1])) return undefined
  const seq = parseInt(entry[0], 10)
  if (!Number.isSafeInteger(seq) || seq < 1) return undefined
  const fields = entry[1] as unknown[]
  const event: StoredEvent = { epoch, seq, data: '', time: 0 }
  for (let index = 0; index + 1 < fields.length; index += 2) {
    const value = fields[index + 1]
    if (typeof value !== 'string') return undefined
    switch (fields[index]) {
      case 'd': event.data = value; break
      case 'ms': event.time = Number(value); break
      case 't': event.type = value; break
      case 'r': event.retry = Number(value); break
      case 'o': event.topics = value.split(' '); break
    }
  }
  if (event.data === '' || !Number.isFinite(event.time) || (event.type !== undefined && CONTROL.test(event.type)) || (event.retry !== undefined && !Number.isSafeInteger(event.retry))) return undefined
  return event
}
