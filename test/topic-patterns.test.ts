import assert from 'node:assert/strict'
import { test } from 'node:test'
import { compilePattern, compilePatterns, patternProblem } from '../src/topic-patterns.js'

test('* matches exactly one segment, ** any rest, anything else itself', () => {
  const cases: Array<[string, string, boolean]> = [
    ['chat', 'chat', true], ['chat', 'chat/x', false], ['chat', 'cha', false],
    ['chat/*', 'chat/room1', true], ['chat/*', 'chat', false], ['chat/*', 'chat/a/b', false], ['chat/*', 'chat/', false],
    ['users/42/**', 'users/42/inbox', true], ['users/42/**', 'users/42/a/b/c', true], ['users/42/**', 'users/42', false],
    ['users/42/**', 'users/421/inbox', false], ['*/news', 'eu/news', true], ['*/news', 'eu/sport', false],
    ['**', 'anything/at/all', true], ['**', 'x', true], ['a/*/c', 'a/b/c', true], ['a/*/c', 'a/b/d', false]
  ]
  for (const [pattern, topic, expected] of cases) assert.equal(compilePattern(pattern)(topic), expected, `${pattern} ~ ${topic}`)
})

test('a list matches when any pattern does; an empty list matches nothing', () => {
  const matches = compilePatterns(['chat/*', 'alerts'])
  assert.equal(matches('chat/x'), true)
  assert.equal(matches('alerts'), true)
  assert.equal(matches('other'), false)
  assert.equal(compilePatterns([])('chat'), false)
})

test('bad patterns are refused with a reason', () => {
  for (const bad of ['', 'a/**/b', 'ch*t', 'a b', 'x'.repeat(257), '***']) {
    assert.notEqual(patternProblem(bad), undefined, bad)
    assert.throws(() => compilePattern(bad), /bad topic pattern/)
  }
})
