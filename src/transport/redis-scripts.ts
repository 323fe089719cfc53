/**
 * The Lua scripts the Redis transport runs. PUBLISH_SCRIPT is also Herald's contract for backends that
 * publish through Redis directly (see README, "Publishing from Redis"): run it with EVAL/EVALSHA.
 */

/**
 * A Lua function both scripts start with: whether Redis has evicted any key since it started (`evicted_keys` of
 * INFO stats), asked at most once per call. Only a Redis whose maxmemory-policy evicts ever does; once it has, a
 * topic's history may be missing before its retention, and only a conservative reading keeps that from being a
 * silent gap (README, "Redis memory").
 */
const EVICTED_ANY = `
local evictedAnyAnswer = nil
local function evictedAny ()
  if evictedAnyAnswer == nil then
    local stats = redis.call('INFO', 'stats')
    evictedAnyAnswer = (tonumber(string.match(stats, 'evicted_keys:(%d+)')) or 0) > 0
  end
  return evictedAnyAnswer
end
`

/**
 * Publishes one event, atomically: next sequence number from the counter, the epoch (created with the counter:
 * when INCR creates the counter, or the epoch key is missing, a new epoch is made from Redis's TIME in
 * microseconds, base 36), append to each topic's history stream (explicit id `<seq>-0`, `MAXLEN ~` retention),
 * optional idempotency record, PUBLISH to each topic's channel. The event id is `<epoch>-<seq>`.
 * Every key expires: a history stream ARGV[3] ms after its last event, an idempotency record after its window,
 * the counter, the epoch and the marks after the longer of the two (each refreshed on every publish), so an idle
 * deployment forgets everything and starts a new epoch. The marks (a sorted set: score a sequence number,
 * member its publish time in ms, one every ARGV[3]/64 ms, the newest 128 kept) let a reader tell whether a
 * position is older than the retention, so a stream that expired is never a silent gap.
 * Each history entry has fields t (type), r (retry), d (data), ms (publish time), e (epoch) and p (the id of the
 * topic's previous event), so a reader can tell whether anything after a position was trimmed, however it was
 * trimmed. A stream whose newest entry is from another epoch is left over from a lost counter: it is deleted
 * before the append, so a stream only ever holds one epoch's events. A stream started afresh once Redis has
 * evicted any key (EVICTED_ANY) may follow an evicted one: its first entry's `p` is then the previous sequence
 * number, so a reader from before it is told of a gap.
 *
 * KEYS[1]    the id counter                    `<prefix>seq`
 * KEYS[2]    the epoch                         `<prefix>epoch`
 * KEYS[3]    the marks                         `<prefix>marks`
 * KEYS[4]    the idempotency record            `<prefix>idem:<key>` (any key name when ARGV[4] is 0)
 * KEYS[5..]  one history stream per topic      `<prefix>history:<topic>`
 * ARGV[1]    the channel prefix                `<prefix>topic:`
 * ARGV[2]    history size per topic (0 keeps none)
 * ARGV[3]    history retention in ms after a topic's last event (at least 1)
 * ARGV[4]    idempotency window in ms (0 = no idempotency key)
 * ARGV[5]    event type, '' for none (no CR, LF or NUL)
 * ARGV[6]    retry in ms, '' for none (digits only)
 * ARGV[7]    data: JSON text
 * ARGV[8..]  topic names, in the order of KEYS[5..]
 * Returns    { id, 1 if an earlier publish with this idempotency key already stored it else 0 }
 * Channel message: `<epoch>-<seq>\n<type>\n<retry>\n<publish time in ms, Redis's clock>\n<data>`
 */
export const PUBLISH_SCRIPT = `
${EVICTED_ANY}
if string.find(ARGV[5], '[\\r\\n%z]') then
  return redis.error_reply('ERR herald: type must not contain CR, LF or NUL')
end
if not string.find(ARGV[6], '^%d*$') then
  return redis.error_reply('ERR herald: retry must be digits')
end
local retention = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
if window > 0 then
  local earlier = redis.call('GET', KEYS[4])
  if earlier then return { earlier, 1 } end
end
local seq = redis.call('INCR', KEYS[1])
local time = redis.call('TIME')
local epoch = false
if seq ~= 1 then epoch = redis.call('GET', KEYS[2]) end
if not epoch then
  local digits = '0123456789abcdefghijklmnopqrstuvwxyz'
  local n = tonumber(time[1]) * 1000000 + tonumber(time[2])
  epoch = ''
  repeat
    local digit = n % 36
    epoch = string.sub(digits, digit + 1, digit + 1) .. epoch
    n = (n - digit) / 36
  until n == 0
  redis.call('SET', KEYS[2], epoch)
  redis.call('DEL', KEYS[3])
end
local id = epoch .. '-' .. seq
local ms = time[1] .. string.format('%03d', math.floor(tonumber(time[2]) / 1000))
local lastMark = redis.call('ZRANGE', KEYS[3], -1, -1)[1]
if not lastMark or tonumber(ms) - tonumber(lastMark) >= math.max(1, math.floor(retention / 64)) then
  redis.call('ZADD', KEYS[3], seq, ms)
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -129)
end
local keep = math.max(retention, window)
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PEXPIRE', KEYS[2], keep)
redis.call('PEXPIRE', KEYS[3], keep)
local message = id .. '\\n' .. ARGV[5] .. '\\n' .. ARGV[6] .. '\\n' .. ms .. '\\n' .. ARGV[7]
local size = tonumber(ARGV[2])
for i = 5, #KEYS do
  local previous = '0-0'
  local newest = redis.call('XREVRANGE', KEYS[i], '+', '-', 'COUNT', 1)[1]
  local sameEpoch = false
  if newest then
    for j = 1, #newest[2], 2 do
      if newest[2][j] == 'e' then sameEpoch = newest[2][j + 1] == epoch end
    end
  end
  if sameEpoch then
    previous = newest[1]
  elseif redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('DEL', KEYS[i])
  end
  if previous == '0-0' and seq > 1 and evictedAny() then previous = (seq - 1) .. '-0' end
  if size > 0 then
    redis.call('XADD', KEYS[i], 'MAXLEN', '~', size, seq .. '-0', 't', ARGV[5], 'r', ARGV[6], 'd', ARGV[7], 'ms', ms, 'e', epoch, 'p', previous)
  else
    redis.call('XADD', KEYS[i], 'MAXLEN', 0, seq .. '-0', 'd', '', 'e', epoch, 'p', previous)
  end
  redis.call('PEXPIRE', KEYS[i], retention)
  redis.call('PUBLISH', ARGV[1] .. ARGV[i + 3], message)
end
if window > 0 then redis.call('SET', KEYS[4], id, 'PX', window) end
return { id, 0 }
`

/**
 * Reads one page of what a resuming client needs, in one consistent step: never the whole retention.
 * KEYS[1] the id counter; KEYS[2] the epoch; KEYS[3] the marks; KEYS[4..] history streams.
 * ARGV[1] the first sequence number to return; ARGV[2] the history retention in ms; ARGV[3] events per stream;
 * ARGV[4] bytes of data per stream (past the first entry, which always comes).
 * Returns { epoch ('' when none), head, then per stream: trimmedThrough, entries, forgotten, full }: trimmedThrough is
 * the newest sequence number the stream no longer holds (its oldest entry's `p`, or its last id when empty, or
 * Redis 7's max-deleted-entry-id after XDEL, whichever is larger); entries are XRANGE … COUNT results; forgotten is 1
 * when events after the position may have expired with the stream: the position is older than the retention
 * (by the marks) and the stream is missing or starts afresh (`p` 0-0) after it. A stream left over from another
 * epoch counts as missing. A missing stream is also forgotten once Redis has evicted any key (EVICTED_ANY): it may
 * have been evicted. full is 1 when the entries stopped at ARGV[3] or ARGV[4] while the stream held more.
 */
export const READ_SCRIPT = `
${EVICTED_ANY}
local function number (streamId)
  return tonumber((string.gsub(streamId, '-.*', ''))) or 0
end
local function field (entry, name)
  if type(entry) ~= 'table' or not entry[2] then return nil end
  for j = 1, #entry[2], 2 do
    if entry[2][j] == name then return entry[2][j + 1] end
  end
  return nil
end
local epoch = redis.call('GET', KEYS[2]) or ''
local first = tonumber(ARGV[1])
local old = false
if epoch ~= '' then
  local mark = redis.call('ZREVRANGEBYSCORE', KEYS[3], first, '-inf', 'LIMIT', 0, 1)[1]
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  old = (not mark) or tonumber(mark) < now - tonumber(ARGV[2])
end
local result = { epoch, redis.call('GET', KEYS[1]) or '0' }
local count = tonumber(ARGV[3])
local maxBytes = tonumber(ARGV[4])
for i = 4, #KEYS do
  local trimmed = 0
  local entries = {}
  local full = false
  local forgotten = old
  local exists = false
  if epoch ~= '' and redis.call('EXISTS', KEYS[i]) == 1 then
    local info = redis.call('XINFO', 'STREAM', KEYS[i])
    local fields = {}
    for j = 1, #info, 2 do fields[info[j]] = info[j + 1] end
    local oldest = fields['first-entry']
    local newest = fields['last-entry']
    if type(newest) == 'table' and newest[1] and field(newest, 'e') ~= epoch then
      -- left over from a lost counter: none of it belongs to this epoch
    else
      exists = true
      if type(oldest) == 'table' and oldest[1] then
        trimmed = number(field(oldest, 'p') or '0')
        forgotten = forgotten and trimmed == 0 and number(oldest[1]) > first
      else
        trimmed = number(fields['last-generated-id'])
        forgotten = false
      end
      trimmed = math.max(trimmed, number(fields['max-deleted-entry-id'] or '0'))
      -- The first entry tells how many of its size fit in the bytes: never load a whole page of big events into
      -- the script to return one of them. One more than that: whether more remain tells the hub to read on.
      local range = redis.call('XRANGE', KEYS[i], first .. '-0', '+', 'COUNT', 1)
      if range[1] then
        local size = math.max(1, #(field(range[1], 'd') or ''))
        local more = math.min(count, math.max(1, math.floor(maxBytes / size)))
        local rest = redis.call('XRANGE', KEYS[i], (number(range[1][1]) + 1) .. '-0', '+', 'COUNT', more)
        for k = 1, #rest do range[k + 1] = rest[k] end
      end
      local bytes = 0
      for k = 1, #range do
        local size = #(field(range[k], 'd') or '')
        if k > count or (k > 1 and bytes + size > maxBytes) then
          full = true
          break
        end
        bytes = bytes + size
        entries[k] = range[k]
      end
    end
  end
  if epoch ~= '' and not exists and not forgotten then forgotten = evictedAny() end
  result[#result + 1] = tostring(trimmed)
  result[#result + 1] = entries
  result[#result + 1] = forgotten and 1 or 0
  result[#result + 1] = full and 1 or 0
end
return result
`
