// chat-feed.js
const list = document.querySelector('#feed')
const stream = new EventSource('/v1/stream?topic=chat')
stream.addEventListener('message', (event) => {
  const item = document.createElement('li')
  item.textContent = JSON.parse(event.data).text
  list.append(item)
})
// History no longer covers the gap since the last event: reload the page's state.
stream.addEventListener('herald.reset', () => list.replaceChildren())
