// chat-client.js
import { createHerald } from '/client/herald-client.js'

const list = document.querySelector('#feed')
const herald = createHerald({ url: '/v1/stream' })
herald.subscribe(['chat'], {
  onEvent (event) {
    const item = document.createElement('li')
    item.textContent = event.data.text
    list.append(item)
  },
  onReset () { list.replaceChildren() }
})
