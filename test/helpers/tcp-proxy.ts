import { createServer, connect, type Socket } from 'node:net'

/**
 * A loopback TCP proxy whose connections a test can cut, to act out a network drop between a real client
 * and Herald without touching either, or freeze, to act out a client that stops reading its connection.
 */
export async function startProxy (targetPort: number): Promise<{ url: string, port: number, cut: () => void, freeze: () => void, close: () => Promise<void> }> {
  const sockets = new Set<Socket>()
  const upstreams = new Map<Socket, Socket>()
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1')
    upstreams.set(upstream, client)
    upstream.on('close', () => upstreams.delete(upstream))
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
      socket.on('error', () => {})
    }
    client.pipe(upstream).pipe(client)
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  const cut = (): void => { for (const socket of sockets) socket.destroy() }
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    cut,
    // Stops reading from Herald: its bytes pile up in the kernel's buffers, as when a client stops reading.
    freeze: () => {
      for (const [upstream, client] of upstreams) {
        upstream.unpipe(client)
        upstream.pause()
      }
    },
    close: async () => {
      cut()
      await new Promise((resolve) => server.close(resolve))
    }
  }
}
