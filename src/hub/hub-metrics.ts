/**
 * What the hub tells metrics about replays, through one interface with a no-op default (Mercure's `Metrics`), so
 * the hub keeps no counters for them and runs the same without a metrics plugin.
 *
 * A replay is a catch-up that reads history in pages: `resume` for a client that came back with an id, `new` for a
 * new stream's one read of what came between its arrival and its subscription, `resync` after the transport was
 * interrupted or an epoch changed. A malformed or legacy id gets a reset without reading: no replay.
 */
export const REPLAY_KINDS = ['new', 'resume', 'resync'] as const
export type ReplayKind = typeof REPLAY_KINDS[number]

/** `done`: history read up to live; `client-left`: the stream closed first; `failed`: a read failed (retried later). */
export const REPLAY_RESULTS = ['done', 'client-left', 'failed'] as const
export type ReplayResult = typeof REPLAY_RESULTS[number]

export interface HubMetrics {
  replayStarted: (kind: ReplayKind) => void
  replayFinished: (kind: ReplayKind, result: ReplayResult, seconds: number) => void
  /** One history read waited this long for a read slot (0 when one was free). */
  replaySlotWaited: (seconds: number) => void
}

export const NO_HUB_METRICS: HubMetrics = {
  replayStarted: () => {},
  replayFinished: () => {},
  replaySlotWaited: () => {}
}
