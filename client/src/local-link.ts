import { Fanout } from './fanout.js'
import type { Link, LinkHost, TabMessage } from './protocol.js'

/** A stream of the page's own (`shared: false`, or neither a SharedWorker nor Web Locks here). */
export class LocalLink implements Link {
  readonly kind = 'local'
  private readonly fanout: Fanout

  constructor (host: LinkHost) {
    // Delivered a task later, as a worker's or a leader's messages are: handlers never run inside subscribe().
    this.fanout = new Fanout({ config: host.config, token: async () => await host.token(), send: (message) => queueMicrotask(() => host.receive(message)) })
  }

  send (message: TabMessage): void {
    this.fanout.receive(message)
  }

  close (): void {
    this.fanout.close()
  }
}
