/* global EventSource */
// The seed's chat example done right: one EventSource with ids and resume, messages posted as JSON.
const messages = document.getElementById('messages')
const status = document.getElementById('status')
const errorLine = document.getElementById('error')
const form = document.getElementById('composer')
const user = document.getElementById('user')
const text = document.getElementById('text')
const token = document.getElementById('token')

user.value = localStorage.getItem('herald.user') ?? ''
token.value = localStorage.getItem('herald.token') ?? ''

function show (state, label) {
  status.className = `status ${state}`
  status.textContent = label
}

function append (message, id) {
  const item = document.createElement('li')
  item.dataset.id = id
  const time = new Date(message.at).toLocaleTimeString()
  // textContent, never innerHTML: messages come from anyone.
  item.textContent = `[${time}] ${message.user}: ${message.text}`
  messages.append(item)
  item.scrollIntoView({ block: 'end' })
}

const stream = new EventSource('/v1/stream?topic=chat')
stream.addEventListener('open', () => show('open', 'live'))
stream.addEventListener('error', () => show('connecting', 'reconnecting…'))
stream.addEventListener('message', (event) => append(JSON.parse(event.data), event.lastEventId))
stream.addEventListener('herald.reset', () => {
  // Some history is gone: start the list afresh from what the server still has.
  messages.replaceChildren()
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
    body: JSON.stringify({ topic: 'chat', type: 'message', data: { user: user.value, text: text.value, at: Date.now() } })
  })
  if (response.ok) {
    text.value = ''
    text.focus()
  } else {
    const body = await response.json().catch(() => ({}))
    errorLine.textContent = `${response.status}: ${body.message ?? response.statusText}`
  }
})
