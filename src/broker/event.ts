import { encodeFrame } from '../sse/encode.js'
import type { StoredEvent } from './types.js'

/** An event on the fan-out path: its id, and its SSE frame encoded once and shared by every subscriber. */
export interface HeraldEvent {
  readonly id: number
  readonly frame: Buffer
}

export function toHeraldEvent (event: StoredEvent): HeraldEvent {
  const frame: Parameters<typeof encodeFrame>[0] = { id: event.id, data: event.data }
  if (event.type !== undefined) frame.event = event.type
  if (event.retry !== undefined) frame.retry = event.retry
  return { id: event.id, frame: Buffer.from(encodeFrame(frame)) }
}
