import { createServer, connect, type Socket } from 'node:net'

/**
 * A loopback TCP proxy whose connections a test can cut, to act out a network drop between a real client
 * and Herald without touching either.
 */
export async function startProxy (targetPort: number): Promise<{ url: string, cut: () => void, close: () => Promise<void> }> {
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1')
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
    cut,
    close: async () => {
      cut()
      await new Promise((resolve) => server.close(resolve))
    }
  }
}
