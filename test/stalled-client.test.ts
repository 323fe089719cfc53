import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { test } from 'node:test'
import { build, publish, until } from './helper.js'
import { scrape } from './helpers/metrics.js'

/**
 * The kernel's TCP state of the server's side of a loopback connection (Linux /proc/net/tcp), or undefined when
 * the kernel holds no such socket. A plain close leaves it in FIN_WAIT1 with the unsent bytes for as long as the
 * client does not read; a reset frees it at once.
 */
function kernelSocketState (serverPort: number, clientPort: number): string | undefined {
  const hex = (port: number) => port.toString(16).toUpperCase().padStart(4, '0')
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const [, local, remote, state] = line.trim().split(/\s+/)
    if (local?.endsWith(`:${hex(serverPort)}`) === true && remote?.endsWith(`:${hex(clientPort)}`) === true) return state
  }
  return undefined
}

test('a client that never reads is reset after the stall timeout, its server socket is gone, and it is logged once', { timeout: 60_000 }, async (t) => {
  // A byte cap far above what the test sends: only the stall timeout can end this stream.
  const { app, url, log: lines } = await build(t, { LOG_LEVEL: 'info', HERALD_HEARTBEAT_MS: '100', HERALD_STALL_TIMEOUT_MS: '500', HERALD_MAX_QUEUE_BYTES: String(256 * 2 ** 20) })
  const port = Number(new URL(url).port)
  const serverSockets = new Map<number, Socket>()
  app.server.on('connection', (socket: Socket) => { if (socket.remotePort !== undefined) serverSockets.set(socket.remotePort, socket) })

  // A raw socket that asks for the stream and then never reads a byte.
  const client = connect(port, '127.0.0.1')
  client.on('error', () => {})
  const clientClosed = new Promise((resolve) => client.on('close', resolve))
  t.after(() => client.destroy())
  await new Promise((resolve) => client.once('connect', resolve))
  client.write('GET /v1/stream?topic=stall HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n')
  client.pause()
  await until(() => app.hub.streamCount === 1, 5_000, 'subscribed')
  const serverSocket = serverSockets.get(client.localPort as number)
  assert.ok(serverSocket !== undefined)

  // Enough to fill both kernel buffers on loopback (a few MB each) and leave bytes waiting in Herald.
  const data = 'x'.repeat(60_000)
  let published = 0
  // A whole event waiting, not just some bytes: a heartbeat (`:`) in flight also shows as a few bytes waiting (over
  // TLS until it is encrypted), while the kernel still has room and the client is not stalled yet.
  while (serverSocket.writableLength < data.length && published < 2_000) {
    assert.equal((await publish(url, { topic: 'stall', data })).status, 202)
    published++
  }
  assert.ok(serverSocket.writableLength >= data.length, 'an event waits in the server socket')
  const stalledAt = performance.now()
  await until(() => app.hub.streamCount === 0, 10_000, 'the stalled stream to be dropped')
  const droppedAfter = performance.now() - stalledAt
  const metrics = await scrape(app)
  assert.deepEqual({ stalled: metrics.value('herald_clients_dropped_total', { reason: 'stalled' }), slow: metrics.value('herald_clients_dropped_total', { reason: 'slow-client' }) }, { stalled: 1, slow: 0 },
    'the drop is counted in herald_clients_dropped_total{reason="stalled"}')
  assert.equal(serverSocket.destroyed, true, 'the server side of the connection is gone')
  assert.equal(kernelSocketState(port, client.localPort as number), undefined, 'and the kernel holds nothing for it (reset, not closed)')

  const closes = lines.filter((line) => line.msg === 'stream closed')
  assert.equal(closes.length, 1, 'logged once')
  const logged = closes[0] as Record<string, any>
  assert.equal(logged.reason, 'stalled')
  assert.equal(logged.level, 30, 'info: a client that stops reading is not a server error')
  assert.ok(logged.stalledMs >= 500, `stalledMs ${logged.stalledMs}`)

  // The client reads again: what its own kernel buffer holds, then the end.
  client.resume()
  await clientClosed
  t.diagnostic(`${published} events of 60 KB filled the kernel buffers; the stalled client was reset ${droppedAfter.toFixed(0)} ms after bytes first waited in its socket (timeout 500 ms, heartbeat 100 ms), holding ${logged.queuedBytes} bytes in Herald`)
})
