import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ReplyError } from 'ioredis'
import { publishFailure } from '../src/transport/redis-errors.js'

test('a publish failure says what Redis did: unreachable, timed out, closed mid-call, or refused (and why), each with its code', () => {
  const cases: Array<[Error, string, RegExp]> = [
    [new Error("Stream isn't writeable and enableOfflineQueue options is false"), 'HERALD_BROKER_UNAVAILABLE', /^Redis is unreachable; the event was not stored$/],
    [new Error('Connection is closed.'), 'HERALD_BROKER_UNAVAILABLE', /closed before its answer; the event may or may not be stored: retry with the same idempotency key/],
    [new Error('Command timed out'), 'HERALD_BROKER_UNAVAILABLE', /may or may not be stored: retry with the same idempotency key/],
    [new ReplyError("OOM command not allowed when used memory > 'maxmemory'. script: 9728c3, on @user_script:1."), 'HERALD_REDIS_FULL', /^Redis is out of memory .*the event was not stored/],
    [new ReplyError('MISCONF Redis is configured to save RDB snapshots, but it is currently not able to persist on disk.'), 'HERALD_BROKER_UNAVAILABLE', /cannot save to disk \(MISCONF\): the event was not stored/],
    [new ReplyError("READONLY You can't write against a read only replica."), 'HERALD_BROKER_UNAVAILABLE', /read-only replica/],
    [new ReplyError('LOADING Redis is loading the dataset in memory'), 'HERALD_BROKER_UNAVAILABLE', /loading/],
    [new ReplyError('NOPERM this user has no permissions to run the eval command'), 'HERALD_BROKER_UNAVAILABLE', /^Redis refused the publish \(NOPERM\): the event was not stored$/]
  ]
  for (const [error, code, message] of cases) {
    const failure = publishFailure(error) as Error & { code: string, statusCode: number, cause: unknown }
    assert.equal(failure.code, code, error.message)
    assert.equal(failure.statusCode, 503)
    assert.match(failure.message, message)
    assert.equal(failure.cause, error, 'the cause is kept for the log')
  }
})
