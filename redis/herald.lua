#!lua name=herald_v1
--[==[
Herald's publish and read logic: a Redis 7 Function library. Herald loads it at start (FUNCTION LOAD REPLACE when it
is missing or differs) and publishes through it with FCALL; any backend can call it the same way, with the same
checks and guarantees (docs/publishing-from-redis.md).

Every topic's keys share one hash tag, so a call touches one slot and runs unchanged on a Redis Cluster:
  <prefix>{<topic>}            the channel live events go out on (SPUBLISH; Herald SSUBSCRIBEs to it)
  <prefix>{<topic>}:m          the topic's state, a hash: e (epoch), s (newest sequence number), b (boot token)
  <prefix>{<topic>}:h          the topic's history, a stream: entry id <seq>-0, fields d (data), ms (publish
                               time, Redis's clock), and when set t (type), r (retry), o (every topic of the event)
  <prefix>{<topic>}:i:<key>    an idempotency record: the id the key was first published as
Every call declares each key it touches, so while a Cluster moves the topic's slot Redis sends the call to the
node that holds all of them (ASK), or asks for a retry (TRYAGAIN) while they are split, and never runs it beside
half of a topic's keys.
A position on a topic is <epoch>-<seq>: seq grows by one with every event on the topic, within its epoch.

An epoch begins when the topic's state is created, and again whenever this Redis process did not write the state
itself: `boot` is made on the first call after the library was loaded, so a restart (even from an AOF or RDB that
lost acknowledged writes) or a failover to a replica starts a new epoch on each topic's next publish. A sequence
number is therefore never handed out twice in one epoch, and a reader with a position of an older epoch gets a
reset instead of another event under an id it knows. Every key expires: the state and the history RETENTION_MS
after the topic's last event, an idempotency record after IDEMPOTENCY_MS.

Herald rewrites the four settings below (and the library name, from HERALD_REDIS_PREFIX) when it loads the library.
]==]
local PREFIX = 'herald:'
local HISTORY_SIZE = 1000
local RETENTION_MS = 86400000
local IDEMPOTENCY_MS = 600000

local NAME = 'herald_v1'
local MAX_TOPICS = 64
local DIGITS = '0123456789abcdefghijklmnopqrstuvwxyz'
local boot = nil

local function refuse (message)
  return redis.error_reply('HERALD_INVALID ' .. message)
end

local function utf8_length (text)
  local _, count = string.gsub(text, '[^\128-\191]', '')
  return count
end

local function valid_topic (topic)
  return #topic >= 1 and #topic <= 256 and string.find(topic, '^[A-Za-z0-9_.~:@/-]+$') ~= nil
end

-- The topic a topic's state key names (<prefix>{<topic>}:m), and its keys' common start (<prefix>{<topic>}), or nil.
local function topic_of (state_key)
  local open = #PREFIX + 1
  if string.sub(state_key, 1, open) ~= PREFIX .. '{' or string.sub(state_key, -3) ~= '}:m' then return nil end
  local topic = string.sub(state_key, open + 1, -4)
  if not valid_topic(topic) then return nil end
  return topic, string.sub(state_key, 1, -3)
end

local KEYS_EXPECTED = 'keys: expected ' .. PREFIX .. '{<topic>}:m ' .. PREFIX .. '{<topic>}:h'

local function base36 (n)
  local text = ''
  repeat
    local digit = n % 36
    text = string.sub(DIGITS, digit + 1, digit + 1) .. text
    n = (n - digit) / 36
  until n == 0
  return text
end

local function sequence_of (stream_id)
  return tonumber((string.gsub(stream_id, '-.*', ''))) or 0
end

local function field (entry, name)
  local fields = entry[2]
  for j = 1, #fields, 2 do
    if fields[j] == name then return fields[j + 1] end
  end
  return nil
end

--[==[
FCALL <NAME>_publish 2 <prefix>{<topic>}:m <prefix>{<topic>}:h <data> [<type> [<retry> [<topics>]]]
FCALL <NAME>_publish 3 <prefix>{<topic>}:m <prefix>{<topic>}:h <prefix>{<topic>}:i:<idempotency key> <data> [...]
  keys      the topic's state and history, and with an idempotency key its record: 1-200 printable ASCII characters
            without spaces; the event is stored once per key and topic within IDEMPOTENCY_MS, a repeat returns the
            first id
  data      JSON text
  type      '' for none; 1-128 characters, no control characters, not starting with `herald.`
  retry     '' for none; a reconnection delay in ms, 0-86400000
  topics    '' for an event on this topic only; for an event published to several topics (one call per topic, the
            same arguments), all of them, space-separated, in the same order on every call: a stream on several of
            them shows it once
Returns { '<epoch>-<seq>', 0 }, or { the first publish's id, 1 } for a repeated idempotency key. Every check comes
before the first write: a refused call (error HERALD_INVALID <what is wrong>) changes nothing.
]==]
local function publish (keys, args)
  if #keys ~= 2 and #keys ~= 3 then return refuse(KEYS_EXPECTED .. ' [' .. PREFIX .. '{<topic>}:i:<idempotency key>]') end
  local state_key, history = keys[1], keys[2]
  local topic, key = topic_of(state_key)
  if not topic then
    return refuse('topic: expected ' .. PREFIX .. '{<topic>}:m with a topic of 1-256 characters from A-Z a-z 0-9 and - _ . ~ : @ /')
  end
  if history ~= key .. ':h' then return refuse(KEYS_EXPECTED .. ', both of one topic') end
  local record = keys[3]
  local idempotency_key = ''
  if record then
    idempotency_key = string.sub(record, #key + 4)
    if string.sub(record, 1, #key + 3) ~= key .. ':i:' or #idempotency_key < 1 or #idempotency_key > 200 or not string.find(idempotency_key, '^[\33-\126]+$') then
      return refuse('idempotency key: expected ' .. key .. ':i:<key> with a key of 1-200 printable ASCII characters without spaces')
    end
  end
  if #args < 1 or #args > 4 then return refuse('expected 1-4 arguments: data [type [retry [topics]]]') end
  local data, event_type, retry, topics = args[1], args[2] or '', args[3] or '', args[4] or ''
  if not pcall(cjson.decode, data) then return refuse('data: expected JSON text') end
  if event_type ~= '' then
    if string.find(event_type, '%c') or utf8_length(event_type) > 128 or string.sub(event_type, 1, 7) == 'herald.' then
      return refuse('type: expected 1-128 characters with no control characters, not starting with herald.')
    end
  end
  if retry ~= '' and (not string.find(retry, '^%d+$') or #retry > 8 or tonumber(retry) > 86400000) then
    return refuse('retry: expected milliseconds, 0-86400000')
  end
  if topics ~= '' then
    local seen, count, includes = {}, 0, false
    for name in string.gmatch(topics, '[^ ]+') do
      if not valid_topic(name) then return refuse('topics: ' .. name .. ' is not a topic name') end
      if seen[name] then return refuse('topics: ' .. name .. ' is named twice') end
      seen[name] = true
      count = count + 1
      includes = includes or name == topic
    end
    if count > MAX_TOPICS then return refuse('topics: at most ' .. MAX_TOPICS) end
    if not includes then return refuse('topics: must include ' .. topic) end
    if count == 1 then topics = '' end
  end

  if record then
    local earlier = redis.call('GET', record)
    if earlier then return { earlier, 1 } end
  end
  local now = redis.call('TIME')
  if not boot then boot = now[1] .. string.format('%06d', tonumber(now[2])) end
  local state = redis.call('HMGET', state_key, 'e', 's', 'b')
  local epoch = state[1]
  local seq = tonumber(state[2])
  if not epoch or not seq or state[3] ~= boot then
    epoch = base36(tonumber(now[1]) * 1000000 + tonumber(now[2]))
    seq = 0
    redis.call('DEL', history)
  end
  seq = seq + 1
  local ms = now[1] .. string.format('%03d', math.floor(tonumber(now[2]) / 1000))
  -- The history first: XADD is the write that can still fail (a key of another type, an id below the newest), and
  -- then nothing has been written.
  if HISTORY_SIZE > 0 then
    local entry = { 'XADD', history, 'MAXLEN', '~', HISTORY_SIZE, seq .. '-0', 'd', data, 'ms', ms }
    if event_type ~= '' then entry[#entry + 1] = 't'; entry[#entry + 1] = event_type end
    if retry ~= '' then entry[#entry + 1] = 'r'; entry[#entry + 1] = retry end
    if topics ~= '' then entry[#entry + 1] = 'o'; entry[#entry + 1] = topics end
    redis.call(unpack(entry))
    redis.call('PEXPIRE', history, RETENTION_MS)
  end
  redis.call('HSET', state_key, 'e', epoch, 's', seq, 'b', boot)
  redis.call('PEXPIRE', state_key, RETENTION_MS)
  local id = epoch .. '-' .. seq
  if record then redis.call('SET', record, id, 'PX', IDEMPOTENCY_MS) end
  redis.call('SPUBLISH', key, 'herald1\n' .. epoch .. '\n' .. seq .. '\n' .. ms .. '\n' .. event_type .. '\n' .. retry .. '\n' .. topics .. '\n' .. data)
  return { id, 0 }
end

--[==[
FCALL <NAME>_read 2 <prefix>{<topic>}:m <prefix>{<topic>}:h <epoch> <after> <count> <bytes>
One page of a topic's history for a resuming reader: the entries after sequence number <after> of <epoch> (of the
current epoch from its start when <epoch> is another one), at most <count> of them and at most <bytes> of data past
the first (which always comes, so a page always progresses).
Returns { epoch ('' when the topic has none), head (its newest sequence number), oldest (the oldest sequence number
the history still holds; head + 1 when it holds none), entries (XRANGE replies), 1 if more entries follow else 0 }.
]==]
local function read (keys, args)
  local topic, key = topic_of(keys[1] or '')
  if #keys ~= 2 or not topic or keys[2] ~= key .. ':h' then return refuse(KEYS_EXPECTED) end
  local state = redis.call('HMGET', keys[1], 'e', 's')
  local epoch = state[1] or ''
  local head = tonumber(state[2]) or 0
  if epoch == '' then return { '', 0, 1, {}, 0 } end
  local after = 0
  if args[1] == epoch then after = tonumber(args[2]) or 0 end
  local count = tonumber(args[3]) or 100
  local max_bytes = tonumber(args[4]) or 1048576
  local history = keys[2]
  local oldest_entry = redis.call('XRANGE', history, '-', '+', 'COUNT', 1)[1]
  local oldest = head + 1
  if oldest_entry then oldest = sequence_of(oldest_entry[1]) end
  if after >= head then return { epoch, head, oldest, {}, 0 } end
  -- The first entry tells how many of its size fit in the bytes: never load a page of big events to return one.
  local range = redis.call('XRANGE', history, (after + 1) .. '-0', '+', 'COUNT', 1)
  if range[1] then
    local size = math.max(1, #(field(range[1], 'd') or ''))
    local more = math.min(count, math.max(1, math.floor(max_bytes / size)))
    local rest = redis.call('XRANGE', history, (sequence_of(range[1][1]) + 1) .. '-0', '+', 'COUNT', more)
    for k = 1, #rest do range[k + 1] = rest[k] end
  end
  local entries = {}
  local bytes = 0
  local full = 0
  for k = 1, #range do
    local size = #(field(range[k], 'd') or '')
    if k > count or (k > 1 and bytes + size > max_bytes) then
      full = 1
      break
    end
    bytes = bytes + size
    entries[k] = range[k]
  end
  return { epoch, head, oldest, entries, full }
end

redis.register_function(NAME .. '_publish', publish)
redis.register_function{ function_name = NAME .. '_read', callback = read, flags = { 'no-writes' } }
