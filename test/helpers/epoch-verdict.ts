import type { ParsedEvent } from '../../src/sse/parser.js'
import { seq } from './event-ids.js'

export interface EpochVerdict {
  /** Events the client should have had and did not, with no herald.reset to say so. */
  silentlyLost: number
  /** A herald.reset (epoch-changed) came before anything of the new epoch. */
  resetFirst: boolean
  newReceived: number
  oldReceived: number
  /** The new epoch's events arrived in publish order, each once. */
  inOrder: boolean
}

/**
 * What one client got across a Redis that lost its data, against what was published in each epoch: the old
 * epoch's events all (from the first it got), then a reset before anything of the new epoch, then the new epoch's
 * events from some point on to the end, with no gap. Without a reset, every event of the new epoch must have come.
 */
export function judgeAcrossEpochs (events: readonly ParsedEvent[], old: readonly string[], fresh: readonly string[]): EpochVerdict {
  const firstNew = events.findIndex((event) => event.event !== 'herald.reset' && !old.includes(event.id))
  const ids = events.filter((event) => event.event !== 'herald.reset').map((event) => event.id)
  const oldReceived = ids.filter((id) => old.includes(id))
  const newReceived = ids.filter((id) => fresh.includes(id))
  const resetFirst = events.slice(0, firstNew === -1 ? events.length : firstNew).some((event) => event.event === 'herald.reset' && (JSON.parse(event.data) as { reason: string }).reason === 'epoch-changed')
  const tailStart = resetFirst && newReceived.length > 0 ? fresh.indexOf(newReceived[0] as string) : 0
  const expectedNew = fresh.slice(tailStart)
  const silentlyLost = old.filter((id) => seq(id) > seq(oldReceived[0] ?? old[0] as string) && !oldReceived.includes(id)).length +
    expectedNew.filter((id) => !newReceived.includes(id)).length
  const inOrder = JSON.stringify(newReceived) === JSON.stringify(expectedNew.filter((id) => newReceived.includes(id)))
  return { silentlyLost, resetFirst, newReceived: newReceived.length, oldReceived: oldReceived.length, inOrder }
}
