import { BrokerUnavailableError, RedisFullError } from '../errors.js'

/**
 * Why a publish failed in Redis, as the 503 says it: an operator reads the code and the message, and a client
 * learns whether the event may be stored.
 * - No connection: the command was never sent and stored nothing.
 * - A timeout: it was sent, and a Redis that wakes up runs it. The client cannot know, and retries with an
 *   idempotency key.
 * - The connection closed before the answer: it was sent, and Redis may have run it (a master killed after running
 *   it, its replica promoted with the write). The same: the client retries with an idempotency key. Herald never
 *   sends it again itself (ioredis's resend is off), which could store it twice.
 * - A refusal (an error reply): Redis did not run it, so nothing was stored. The publish script's first write
 *   is where Redis refuses (OOM at maxmemory under `noeviction`, MISCONF when it cannot persist, READONLY on a
 *   replica), and a script that has not written yet leaves nothing behind.
 */
export function publishFailure (error: unknown): Error {
  const message = error instanceof Error ? error.message : String(error)
  if (message === 'Command timed out') {
    return new BrokerUnavailableError('Redis did not answer in time; the event may or may not be stored: retry with the same idempotency key', { cause: error })
  }
  if (message === CONNECTION_CLOSED) {
    return new BrokerUnavailableError('the connection to Redis closed before its answer; the event may or may not be stored: retry with the same idempotency key', { cause: error })
  }
  if (!isReplyError(error)) return new BrokerUnavailableError('Redis is unreachable; the event was not stored', { cause: error })
  const code = message.split(' ', 1)[0] ?? ''
  switch (code) {
    case 'OOM':
      return new RedisFullError('Redis is out of memory (used memory above its maxmemory, and its policy evicts nothing): the event was not stored; history expires, or raise maxmemory', { cause: error })
    case 'MISCONF':
      return new BrokerUnavailableError('Redis refuses writes because it cannot save to disk (MISCONF): the event was not stored', { cause: error })
    case 'READONLY':
      return new BrokerUnavailableError('Redis is a read-only replica (a failover?): the event was not stored', { cause: error })
    case 'LOADING':
      return new BrokerUnavailableError('Redis is loading its data set: the event was not stored', { cause: error })
    default:
      return new BrokerUnavailableError(`Redis refused the publish (${code}): the event was not stored`, { cause: error })
  }
}

/** ioredis's error for a command sent on a connection that closed before the reply. */
const CONNECTION_CLOSED = 'Connection is closed.'

/** An error reply from Redis (ioredis's ReplyError), not a connection's failure. */
function isReplyError (error: unknown): error is Error {
  return error instanceof Error && error.name === 'ReplyError'
}

/** Redis answered a publish with something that is not the publish function's answer. */
class UnexpectedReplyError extends Error {
  override name = 'UnexpectedReplyError'
}

/** A publish whose answer Herald cannot read: the call ran, so the event may be stored. */
export function unexpectedPublishReply (): Error {
  return new BrokerUnavailableError('Redis answered the publish with something Herald did not expect; the event may or may not be stored: retry with the same idempotency key', { cause: new UnexpectedReplyError('unexpected reply to the publish function') })
}

/**
 * Whether a publish call that failed may still have stored its event: one Redis did not answer in time was sent, and
 * Redis runs it when it wakes up; one whose connection closed before the answer may have run; one whose answer made
 * no sense ran. Otherwise (no connection, a refusal) nothing was stored.
 */
export function mayHaveRun (error: Error): boolean {
  const cause = (error as { cause?: unknown }).cause
  return cause instanceof UnexpectedReplyError || (cause instanceof Error && (cause.message === 'Command timed out' || cause.message === CONNECTION_CLOSED))
}
