/* global location */
// Herald's console: subscribe to topics with herald-client, watch events and the connection as they happen,
// publish through the API and see its answer, and follow the instance's figures.
import { createHerald } from '/client/herald-client.js'

/** Rows kept in the events table: the oldest go first, so a busy topic cannot grow the page without end. */
const MAX_ROWS = 500
const MAX_LOG_LINES = 200
const STATS_EVERY_MS = 2_000
const PREVIEW_CHARACTERS = 160

const byId = (id) => document.getElementById(id)
const connectForm = byId('connect')
const topicsInput = byId('topics')
const typesInput = byId('types')
const lastIdInput = byId('last-id')
const tokenInput = byId('token')
const disconnectButton = byId('disconnect-button')
const stateLine = byId('state')
const log = byId('log')
const rows = byId('event-rows')
const eventCount = byId('event-count')
const publishForm = byId('publish')
const publishTopic = byId('publish-topic')
const publishType = byId('publish-type')
const publishData = byId('publish-data')
const publishResult = byId('publish-result')
const announcer = byId('announcer')

const utf8 = new TextEncoder()
let herald
/** Bumped on every connect and disconnect: handlers of an older connection stay quiet. */
let connection = 0
let received = 0
/** What the last failed attempt's explanation said: a series of the same failure is logged once. */
let lastWhy
/** Topic names and types are separated by spaces or commas; neither can be part of a valid name. */
function names (text) {
  return text.split(/[\s,]+/).filter((name) => name !== '')
}

function clock (date = new Date()) {
  const two = (n) => String(n).padStart(2, '0')
  return `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}.${String(date.getMilliseconds()).padStart(3, '0')}`
}

function timeElement (date = new Date()) {
  const time = document.createElement('time')
  time.dateTime = date.toISOString()
  time.textContent = clock(date)
  return time
}

function formatBytes (bytes) {
  if (bytes < 1024) return `${bytes} B`
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`
}

function element (name, text, className) {
  const node = document.createElement(name)
  if (text !== undefined) node.textContent = text
  if (className !== undefined) node.className = className
  return node
}

// Connection log and state

/**
 * The state line announces itself (role status); resets and refusals are said once more here, since the log
 * itself is not a live region: it would read every state change a second time.
 */
function announce (text) {
  announcer.textContent = text
}

function logLine (text, kind = 'info') {
  const item = element('li', undefined, kind)
  item.append(timeElement(), ' ', element('span', text))
  log.append(item)
  while (log.childElementCount > MAX_LOG_LINES) log.firstElementChild.remove()
  log.scrollTop = log.scrollHeight
}

/** The client's state as it is (herald-client's onState): why it failed, and whether it will try again. */
function describeState (state) {
  const details = []
  if (state.attempt > 0) details.push(`attempt ${state.attempt}`)
  if (state.reason !== undefined) details.push(`refused: ${state.reason}`)
  if (state.status !== undefined) details.push(`${state.status}${state.code === undefined ? '' : ` ${state.code}`}`)
  if (state.retryInMs !== undefined) details.push(`next try in ${(state.retryInMs / 1000).toFixed(1)} s`)
  if (state.stopped) details.push('stopped: change the topics or the token and connect again')
  return details.length === 0 ? state.state : `${state.state} (${details.join(', ')})`
}

function showState (state, current) {
  if (current !== connection) return
  stateLine.className = `state ${state.state}${state.stopped ? ' stopped' : ''}`
  stateLine.textContent = describeState(state)
  logLine(describeState(state), `state-${state.state}`)
  // Herald's own words for a 4xx (the bad topic, the missing token), or why the attempt failed: once per series.
  const why = state.message === undefined
    ? undefined
    : state.status === undefined ? state.message : `Herald refused the stream: ${state.status} ${state.code ?? ''} ${state.message}`.replace(/ +/g, ' ')
  if (why !== undefined && why !== lastWhy) {
    logLine(why, 'error')
    announce(why)
  }
  lastWhy = why ?? (state.state === 'open' ? undefined : lastWhy)
  if (state.state === 'open') refreshFigures()
}

function showReset (notice, current) {
  if (current !== connection) return
  const topics = Array.isArray(notice.topics) ? notice.topics.join(', ') : ''
  const text = `reset (${notice.reason}) on ${topics} after ${JSON.stringify(notice.lastEventId)}: events may be missing, reload their state`
  logLine(text, 'reset')
  announce(text)
  const row = element('tr', undefined, 'reset')
  const cell = element('td', text)
  cell.colSpan = 6
  row.append(cell)
  addRow(row)
}

// Events table

function addRow (row) {
  rows.prepend(row)
  while (rows.childElementCount > MAX_ROWS) rows.lastElementChild.remove()
}

/**
 * The event's id on its own topic, as the publish reply gave it: a multi-topic stream's id carries a position per
 * topic, `<tag>:<epoch>-<seq>`, with the tag of src/protocol.ts's topicTag (4 base-36 characters of FNV-1a).
 */
function positionOn (id, topic) {
  if (!id.includes(':')) return id
  let hash = 0x811c9dc5
  for (let index = 0; index < topic.length; index++) {
    hash ^= topic.charCodeAt(index)
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  const tag = (hash % 1_679_616).toString(36).padStart(4, '0')
  const entry = id.split(',').find((part) => part.startsWith(`${tag}:`))
  return entry === undefined ? id : entry.slice(tag.length + 1)
}

function addEvent (event, current) {
  if (current !== connection) return
  const json = JSON.stringify(event.data) ?? 'undefined'
  const row = element('tr')
  const position = positionOn(event.id, event.topic)
  row.dataset.id = position
  row.dataset.topic = event.topic
  const id = element('td')
  id.append(element('code', position))
  id.title = event.id
  const time = element('td')
  time.append(timeElement())
  const payload = element('td', undefined, 'payload')
  const details = element('details')
  const summary = element('summary')
  summary.append(element('code', json.length > PREVIEW_CHARACTERS ? `${json.slice(0, PREVIEW_CHARACTERS)}…` : json))
  details.append(summary, element('pre', JSON.stringify(event.data, null, 2)))
  payload.append(details)
  row.append(id, element('td', event.topic), element('td', event.type), time, element('td', formatBytes(utf8.encode(json).length), 'number'), payload)
  addRow(row)
  refreshFigures()
  received++
  eventCount.textContent = `${received} received`
}

byId('clear-button').addEventListener('click', () => {
  rows.replaceChildren()
  received = 0
  eventCount.textContent = 'none yet'
})

// Subscribe

function connect () {
  const topics = names(topicsInput.value)
  if (topics.length === 0) {
    topicsInput.setAttribute('aria-invalid', 'true')
    logLine('name at least one topic to subscribe to', 'error')
    topicsInput.focus()
    return
  }
  topicsInput.removeAttribute('aria-invalid')
  close()
  const current = ++connection
  lastWhy = undefined
  const token = tokenInput.value.trim()
  const types = names(typesInput.value)
  const lastEventId = lastIdInput.value.trim()
  // The console's own stream (shared: false): its state is this page's, and its token this page's alone.
  herald = createHerald({ url: new URL('/v1/stream', location.href), shared: false, ...(token === '' ? {} : { token: () => token }) })
  const how = [
    types.length === 0 ? '' : ` (types ${types.join(', ')})`,
    lastEventId === '' ? '' : ` after ${lastEventId}`,
    token === '' ? '' : ' with a token'
  ]
  logLine(`subscribing to ${topics.join(', ')}${how.join('')}`)
  herald.subscribe(topics, {
    ...(types.length === 0 ? {} : { types }),
    ...(lastEventId === '' ? {} : { lastEventId }),
    onEvent: (event) => addEvent(event, current),
    onReset: (notice) => showReset(notice, current),
    onState: (state) => showState(state, current)
  })
  if (publishTopic.value.trim() === '') publishTopic.value = topics[0]
  disconnectButton.disabled = false
}

function close () {
  if (herald === undefined) return
  herald.close()
  herald = undefined
  connection++
}

connectForm.addEventListener('submit', (event) => {
  event.preventDefault()
  connect()
})

disconnectButton.addEventListener('click', () => {
  close()
  disconnectButton.disabled = true
  stateLine.className = 'state closed'
  stateLine.textContent = 'not connected'
  logLine('disconnected', 'state-closed')
})

// Publish

function markInvalid (fields) {
  for (const field of [publishTopic, publishType, publishData]) {
    if (fields.includes(field)) field.setAttribute('aria-invalid', 'true')
    else field.removeAttribute('aria-invalid')
  }
}

/** Which field an API error is about, from its code and the path its message starts with. */
function fieldsOf (error) {
  const message = String(error.message ?? '')
  if (error.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || error.code === 'HERALD_DATA_TOO_DEEP' || message.startsWith('body/data')) return [publishData]
  if (message.startsWith('body/topic') || error.code === 'HERALD_FORBIDDEN') return [publishTopic]
  if (message.startsWith('body/type')) return [publishType]
  return []
}

function showResult (kind, parts) {
  publishResult.className = `result ${kind}`
  publishResult.replaceChildren(...parts)
}

/**
 * The data is sent as typed, inside a body the page builds: invalid JSON reaches Herald, which says what is wrong
 * with it, the way it would answer any publisher.
 */
function publishBody () {
  const topics = names(publishTopic.value)
  const type = publishType.value.trim()
  return `{"topic":${JSON.stringify(topics.length === 1 ? topics[0] : topics)}${type === '' ? '' : `,"type":${JSON.stringify(type)}`},"data":${publishData.value}}`
}

async function publish () {
  const headers = { 'content-type': 'application/json' }
  const token = tokenInput.value.trim()
  if (token !== '') headers.authorization = `Bearer ${token}`
  showResult('pending', ['publishing…'])
  let response
  try {
    response = await fetch('/v1/events', { method: 'POST', headers, body: publishBody() })
  } catch (error) {
    markInvalid([])
    showResult('error', [`Herald did not answer: ${error.message}`])
    return
  }
  const body = await response.json().catch(() => ({}))
  if (response.ok) {
    markInvalid([])
    refreshFigures()
    // Every topic numbers its own events: one id per topic, the first marked as the event's.
    const topics = body.topics ?? []
    const parts = [`${response.status} published to `]
    for (const [index, topic] of topics.entries()) {
      if (index > 0) parts.push(', ')
      parts.push(`${topic} as `, element('code', (body.ids ?? [])[index] ?? '', index === 0 ? 'published-id' : undefined))
    }
    if (body.duplicate === true) parts.push(' (a duplicate: nothing new sent)')
    showResult('ok', parts)
    return
  }
  markInvalid(fieldsOf(body))
  const status = element('strong', `${response.status} ${body.error ?? response.statusText}`)
  const parts = [status]
  if (body.code !== undefined) parts.push(' ', element('code', body.code, 'error-code'))
  parts.push(element('span', body.message ?? '', 'error-message'))
  showResult('error', parts)
}

publishForm.addEventListener('submit', (event) => {
  event.preventDefault()
  publish().catch((error) => showResult('error', [String(error)]))
})

publishData.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
    event.preventDefault()
    publishForm.requestSubmit()
  }
})

byId('format-button').addEventListener('click', () => {
  try {
    publishData.value = JSON.stringify(JSON.parse(publishData.value), null, 2)
    markInvalid([])
    showResult('', [])
  } catch (error) {
    markInvalid([publishData])
    showResult('error', [element('strong', 'Not JSON'), element('span', `${error.message} (checked in this page; nothing was sent)`, 'error-message')])
  }
})

// Instance figures

/** Rates are measured over at least this long: a refresh right after a publish would make a spike of one event. */
const RATE_WINDOW_MS = 1_000
/** The shortest time between two polls, when events ask for fresh figures. */
const SOONEST_POLL_MS = 500
let rateBase
let statsTimer
/** When the next poll runs (performance.now() time), and when the last one started. */
let nextPollAt = 0
let lastPollAt = -Infinity
let polling = false
let pollAgain = false
const figure = (id, text) => { byId(id).textContent = text }
const FIGURES = ['stat-streams', 'stat-topics', 'stat-subscriptions', 'stat-events', 'stat-event-rate', 'stat-bytes', 'stat-byte-rate']

async function readJson (path) {
  const response = await fetch(path, { signal: AbortSignal.timeout(STATS_EVERY_MS * 2) })
  if (!response.ok) throw new Error(`${path}: ${response.status}`)
  return await response.json()
}

function showRates (stats, at) {
  // Counters that went back mean another process answers now (a restart): no rate across it.
  if (rateBase === undefined || stats.eventsSent < rateBase.eventsSent || stats.bytesSent < rateBase.bytesSent) {
    rateBase = { at, eventsSent: stats.eventsSent, bytesSent: stats.bytesSent }
    figure('stat-event-rate', '…')
    figure('stat-byte-rate', '…')
    return
  }
  if (at - rateBase.at < RATE_WINDOW_MS) return
  const seconds = (at - rateBase.at) / 1000
  figure('stat-event-rate', `${((stats.eventsSent - rateBase.eventsSent) / seconds).toFixed(1)}/s`)
  figure('stat-byte-rate', `${formatBytes(Math.round((stats.bytesSent - rateBase.bytesSent) / seconds))}/s`)
  rateBase = { at, eventsSent: stats.eventsSent, bytesSent: stats.bytesSent }
}

function schedulePoll (delay) {
  clearTimeout(statsTimer)
  nextPollAt = performance.now() + delay
  statsTimer = setTimeout(pollStats, delay)
}

async function pollStats () {
  polling = true
  lastPollAt = performance.now()
  try {
    const [health, stats] = await Promise.all([readJson('/health'), readJson('/v1/stats')])
    figure('stat-status', `${health.status} (${health.broker})`)
    figure('stat-streams', String(stats.streams))
    figure('stat-topics', String(stats.topics))
    figure('stat-subscriptions', String(stats.subscriptions))
    figure('stat-events', stats.eventsSent.toLocaleString('en'))
    figure('stat-bytes', formatBytes(stats.bytesSent))
    showRates(stats, performance.now())
  } catch {
    // No figures rather than a gone process's last ones.
    for (const id of FIGURES) figure(id, '…')
    figure('stat-status', 'unreachable')
    rateBase = undefined
  } finally {
    polling = false
  }
  schedulePoll(pollAgain ? SOONEST_POLL_MS : STATS_EVERY_MS)
  pollAgain = false
}

/**
 * Figures soon, when something just changed them (the stream opened, an event came or was published); at most
 * one poll every SOONEST_POLL_MS however busy the topics are.
 */
function refreshFigures () {
  if (polling) {
    pollAgain = true
    return
  }
  const now = performance.now()
  const at = Math.max(now + 50, lastPollAt + SOONEST_POLL_MS)
  if (at < nextPollAt) schedulePoll(at - now)
}

// A link can name the topics: /console?topic=chat&topic=news connects at once.
const linked = new URLSearchParams(location.search).getAll('topic')
if (linked.length > 0) {
  topicsInput.value = linked.join(' ')
  connect()
}
pollStats()
