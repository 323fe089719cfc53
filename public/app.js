// The seed's chat example done right, on herald-client: one stream shared by every tab of this origin, resumed
// without loss after a drop, the retained history shown on load, messages posted as JSON.
import { createHerald } from '/client/herald-client.js'

const TOPIC = 'chat'
/** Messages kept on the page: the newest ones of the history Herald retains, then live ones. */
const SHOWN = 100

const messages = document.getElementById('messages')
const status = document.getElementById('status')
const errorLine = document.getElementById('error')
const form = document.getElementById('composer')
const user = document.getElementById('user')
const text = document.getElementById('text')
const token = document.getElementById('token')

user.value = localStorage.getItem('herald.user') ?? ''
token.value = localStorage.getItem('herald.token') ?? ''

/** The badge's look for each client state: only `open` is live, and a state the client gave up in is offline. */
const LOOKS = {
  open: 'open',
  closed: 'closed',
  unauthorized: 'connecting',
  forbidden: 'connecting',
  rejected: 'closed'
}

/** What the badge says: the client's state as it is (herald-client's onState), never more hopeful. */
function label (state) {
  const details = []
  if (state.attempt > 1) details.push(`attempt ${state.attempt}`)
  if (state.retryInMs !== undefined) details.push(`next try in ${Math.ceil(state.retryInMs / 1000)} s`)
  const attempt = details.length === 0 ? '' : ` (${details.join(', ')})`
  switch (state.state) {
    case 'open': return 'live'
    case 'connecting': return `connecting…${attempt}`
    case 'reconnecting': return `reconnecting…${attempt}`
    case 'refused': return `refused: ${state.reason}${attempt}`
    case 'unauthorized':
    case 'forbidden':
    case 'rejected':
      return state.stopped ? `${state.state}: ${state.code ?? state.status} (stopped)` : `${state.state}: ${state.code ?? state.status}${attempt}`
    case 'token-error': return `token error${attempt}`
    default: return 'offline'
  }
}

function show (state) {
  const look = state.stopped ? 'closed' : LOOKS[state.state] ?? 'connecting'
  status.className = `status ${look}`
  status.dataset.state = state.state
  status.textContent = label(state)
  status.title = state.message ?? ''
}

/** A time only when the payload carries a valid one: a history event shown now did not arrive now. */
function timeOf (value) {
  if (typeof value !== 'number' && typeof value !== 'string') return undefined
  const time = new Date(value)
  return Number.isNaN(time.getTime()) ? undefined : time
}

/** What to show for any JSON payload: a chat message `{ user, text, at }` as such, anything else as itself. */
function describe (data) {
  if (typeof data === 'string') return { text: data }
  if (data !== null && typeof data === 'object' && !Array.isArray(data) && typeof data.text === 'string') {
    return { user: typeof data.user === 'string' && data.user !== '' ? data.user : undefined, text: data.text, time: timeOf(data.at) }
  }
  return { text: JSON.stringify(data) }
}

function line (className, ...parts) {
  const item = document.createElement('li')
  item.className = className
  item.append(...parts)
  return item
}

function span (className, value) {
  const element = document.createElement('span')
  element.className = className
  // textContent, never innerHTML: messages come from anyone.
  element.textContent = value
  return element
}

function append (item) {
  messages.append(item)
  while (messages.children.length > SHOWN) messages.firstElementChild.remove()
  item.scrollIntoView({ block: 'end' })
}

function render (event) {
  const { user: author, text: body, time } = describe(event.data)
  const parts = []
  if (time !== undefined) parts.push(span('time', `[${time.toLocaleTimeString()}]`), ' ')
  if (author !== undefined) parts.push(span('user', author), ': ')
  parts.push(span('text', body))
  const item = line('message', ...parts)
  item.dataset.id = event.id
  append(item)
}

const herald = createHerald({ url: '/v1/stream' })
herald.subscribe([TOPIC], {
  // '0': from the oldest event Herald still has, so a new page shows the recent conversation.
  lastEventId: '0',
  onEvent: render,
  onState: show,
  onReset (notice) {
    // Herald no longer has everything since where this page was: say so, and go on with what it has.
    append(line('notice', span('text', `Some earlier messages are no longer available (${notice.reason}).`)))
  }
})

form.addEventListener('submit', async (event) => {
  event.preventDefault()
  errorLine.textContent = ''
  localStorage.setItem('herald.user', user.value)
  localStorage.setItem('herald.token', token.value)
  const headers = { 'content-type': 'application/json' }
  if (token.value !== '') headers.authorization = `Bearer ${token.value}`
  const response = await fetch('/v1/events', {
    method: 'POST',
    headers,
    body: JSON.stringify({ topic: TOPIC, type: 'message', data: { user: user.value, text: text.value, at: Date.now() } })
  })
  if (response.ok) {
    text.value = ''
    text.focus()
  } else {
    const body = await response.json().catch(() => ({}))
    errorLine.textContent = `${response.status}: ${body.message ?? response.statusText}`
  }
})
