import { backoffDelay, type Backoff } from './backoff.js'
import type { StreamState } from './types.js'

/** How one connection attempt, or the stream it opened, turned out. */
export type Outcome =
  /** Herald accepted the stream (a 200 event stream that is not a refusal). */
  | { kind: 'open' }
  /** A stream that was open ended (the server closed it, a proxy cut it, the network dropped). */
  | { kind: 'ended', retryMs?: number }
  /** Herald's in-band `herald.unavailable`: refused for now, try again after `retryMs`. */
  | { kind: 'refused', reason: string, retryMs: number }
  /**
   * Any answer but a 200 event stream; `code` and `message` from Herald's JSON error body when it has one;
   * `withToken`: the attempt carried a token (so a new one from the provider may do better).
   */
  | { kind: 'status', status: number, code?: string, message?: string, withToken?: boolean }
  /** No answer at all (network error, DNS, CORS), or a 200 stream that ended before it said anything. */
  | { kind: 'network', message?: string }
  /** The token provider threw, or returned something that is not a token. */
  | { kind: 'token-error', message: string }

/** What to do next: the state to show, and when to try again (`retryInMs` absent: the client gives up). */
export interface Step {
  state: StreamState
  retryInMs?: number
}

export interface StreamMachineOptions {
  backoff: Backoff
  /** Attempts in a row answered 401/403 before the client stops (each with a new token from the provider). */
  authAttempts?: number
  random?: () => number
}

/** 401/403 answers in a row, each with a fresh token, after which a provider's tokens are not going to do. */
export const AUTH_ATTEMPTS = 3

/**
 * The stream's state machine, without the network: what each outcome means for the page (`onState`) and for the
 * next attempt. Failures (refusals, errors, statuses, token errors, ended streams) count in `attempt` until the
 * stream is open again, and set the delay: the server's own for a refusal (`retryMs`) and for an ended stream
 * (its `retry:`), else a jittered backoff that doubles with the count up to `maxMs`. A 400 stops at once: the
 * request itself is wrong. A 401/403 stops at once when the attempt carried no token, else after `authAttempts` answers in
 * a row, each attempt with a token asked anew.
 */
export class StreamMachine {
  private failures = 0
  private authFailures = 0
  private everOpen = false
  private readonly authAttempts: number
  private readonly random: () => number

  constructor (private readonly options: StreamMachineOptions) {
    this.authAttempts = options.authAttempts ?? AUTH_ATTEMPTS
    this.random = options.random ?? Math.random
  }

  /** Failed attempts since the stream was last open. */
  get attempt (): number {
    return this.failures
  }

  /** The state while an attempt is under way. */
  attempting (): StreamState {
    return { state: this.everOpen ? 'reconnecting' : 'connecting', attempt: this.failures }
  }

  next (outcome: Outcome): Step {
    switch (outcome.kind) {
      case 'open':
        this.failures = 0
        this.authFailures = 0
        this.everOpen = true
        return { state: { state: 'open', attempt: 0 } }
      case 'ended': {
        this.failures++
        const retryInMs = outcome.retryMs ?? this.backoffDelay()
        return { state: { state: 'reconnecting', attempt: this.failures, retryInMs }, retryInMs }
      }
      case 'refused':
        this.failures++
        return { state: { state: 'refused', attempt: this.failures, reason: outcome.reason, retryInMs: outcome.retryMs }, retryInMs: outcome.retryMs }
      case 'token-error': {
        this.failures++
        const retryInMs = this.backoffDelay()
        return { state: { state: 'token-error', attempt: this.failures, message: outcome.message, retryInMs }, retryInMs }
      }
      case 'network': {
        this.failures++
        const retryInMs = this.backoffDelay()
        const state: StreamState = { ...this.attempting(), retryInMs }
        if (outcome.message !== undefined) state.message = outcome.message
        return { state, retryInMs }
      }
      case 'status':
        return this.status(outcome)
    }
  }

  /** Back to the start: a new subscription, new topics, or the page closed the stream. */
  reset (): void {
    this.failures = 0
    this.authFailures = 0
    this.everOpen = false
  }

  private status (outcome: { status: number, code?: string, message?: string, withToken?: boolean }): Step {
    this.failures++
    const details: Partial<StreamState> = { status: outcome.status }
    if (outcome.code !== undefined) details.code = outcome.code
    if (outcome.message !== undefined) details.message = outcome.message
    if (outcome.status === 400) {
      return { state: { state: 'rejected', attempt: this.failures, ...details, stopped: true } }
    }
    if (outcome.status === 401 || outcome.status === 403) {
      const state = outcome.status === 401 ? 'unauthorized' : 'forbidden'
      this.authFailures++
      if (outcome.withToken !== true || this.authFailures >= this.authAttempts) {
        return { state: { state, attempt: this.failures, ...details, stopped: true } }
      }
      const retryInMs = this.backoffDelay()
      return { state: { state, attempt: this.failures, ...details, retryInMs }, retryInMs }
    }
    // A balancer's 502, a 503 from something before Herald, a 429: worth trying again later.
    const retryInMs = this.backoffDelay()
    return { state: { ...this.attempting(), ...details, retryInMs }, retryInMs }
  }

  private backoffDelay (): number {
    return backoffDelay(Math.max(1, this.failures), this.options.backoff, this.random)
  }
}
