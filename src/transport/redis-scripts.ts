/**
 * The Lua scripts the Redis transport runs. PUBLISH_SCRIPT is also Herald's contract for backends that
 * publish through Redis directly (see README, "Publishing from Redis"): run it with EVAL/EVALSHA.
 */

/**
 * Publishes one event, atomically: next id from the counter, append to each topic's history stream
 * (explicit id `<id>-0`, `MAXLEN ~` retention), optional idempotency record, PUBLISH to each topic's channel.
 * Each history entry has fields t (type), r (retry), d (data), ms (publish time) and p (the id of the topic's
 * previous event), so a reader can tell whether anything after a position was trimmed, however it was trimmed.
 *
 * KEYS[1]    the id counter                    `<prefix>seq`
 * KEYS[2]    the idempotency record            `<prefix>idem:<key>` (any key name when ARGV[3] is 0)
 * KEYS[3..]  one history stream per topic      `<prefix>history:<topic>`
 * ARGV[1]    the channel prefix                `<prefix>topic:`
 * ARGV[2]    history size per topic (0 keeps none)
 * ARGV[3]    idempotency window in ms (0 = no idempotency key)
 * ARGV[4]    event type, '' for none (no CR, LF or NUL)
 * ARGV[5]    retry in ms, '' for none (digits only)
 * ARGV[6]    data: JSON text
 * ARGV[7..]  topic names, in the order of KEYS[3..]
 * Returns    { id, 1 if an earlier publish with this idempotency key already stored it else 0 }
 * Channel message: `<id>\n<type>\n<retry>\n<data>`
 */
export const PUBLISH_SCRIPT = `
if string.find(ARGV[4], '[\\r\\n%z]') then
  return redis.error_reply('ERR herald: type must not contain CR, LF or NUL')
end
if not string.find(ARGV[5], '^%d*$') then
  return redis.error_reply('ERR herald: retry must be digits')
end
local window = tonumber(ARGV[3])
if window > 0 then
  local earlier = redis.call('GET', KEYS[2])
  if earlier then return { earlier, 1 } end
end
local id = redis.call('INCR', KEYS[1])
local time = redis.call('TIME')
local ms = time[1] .. string.format('%03d', math.floor(tonumber(time[2]) / 1000))
local message = id .. '\\n' .. ARGV[4] .. '\\n' .. ARGV[5] .. '\\n' .. ARGV[6]
local size = tonumber(ARGV[2])
for i = 3, #KEYS do
  local newest = redis.call('XREVRANGE', KEYS[i], '+', '-', 'COUNT', 1)[1]
  local previous = newest and newest[1] or '0-0'
  if size > 0 then
    redis.call('XADD', KEYS[i], 'MAXLEN', '~', size, id .. '-0', 't', ARGV[4], 'r', ARGV[5], 'd', ARGV[6], 'ms', ms, 'p', previous)
  else
    redis.call('XADD', KEYS[i], 'MAXLEN', 0, id .. '-0', 'd', '', 'p', previous)
  end
  redis.call('PUBLISH', ARGV[1] .. ARGV[i + 4], message)
end
if window > 0 then redis.call('SET', KEYS[2], id, 'PX', window) end
return { tostring(id), 0 }
`

/**
 * Reads what a resuming client needs, in one consistent step.
 * KEYS[1] the id counter; KEYS[2..] history streams; ARGV[1] the first id to return.
 * Returns { head, trimmedThrough1, entries1, trimmedThrough2, entries2, ... }: trimmedThrough is the newest id
 * the stream no longer holds (its oldest entry's `p`, or its last id when empty, or Redis 7's
 * max-deleted-entry-id after XDEL, whichever is larger); entries are XRANGE results.
 */
export const READ_SCRIPT = `
local function number (streamId)
  return tonumber((string.gsub(streamId, '-.*', ''))) or 0
end
local result = { redis.call('GET', KEYS[1]) or '0' }
for i = 2, #KEYS do
  local trimmed = 0
  local entries = {}
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local info = redis.call('XINFO', 'STREAM', KEYS[i])
    local fields = {}
    for j = 1, #info, 2 do fields[info[j]] = info[j + 1] end
    local first = fields['first-entry']
    if type(first) == 'table' and first[1] then
      for j = 1, #first[2], 2 do
        if first[2][j] == 'p' then trimmed = number(first[2][j + 1]) end
      end
    else
      trimmed = number(fields['last-generated-id'])
    end
    trimmed = math.max(trimmed, number(fields['max-deleted-entry-id'] or '0'))
    entries = redis.call('XRANGE', KEYS[i], ARGV[1] .. '-0', '+')
  end
  result[#result + 1] = tostring(trimmed)
  result[#result + 1] = entries
end
return result
`
