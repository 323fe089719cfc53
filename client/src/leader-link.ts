import { Fanout } from './fanout.js'
import { streamName, tabLockName, type Link, type LinkHost, type OwnerMessage, type TabMessage } from './protocol.js'

/** What goes over the channel: a page's message to the leader, or the leader's to every page. */
type ChannelMessage = { from: 'tab', message: TabMessage } | { from: 'owner', message: OwnerMessage }

/**
 * Sharing without a SharedWorker: the pages of an origin elect a leader with a Web Lock; the leader owns the stream
 * and broadcasts its events on a BroadcastChannel, and the others send it their subscriptions there. When the
 * leader goes, the lock passes to another page, which says so (`owner`); every page then announces its
 * subscriptions again from the last id it got, and the new leader resumes from the oldest: nothing is lost, and
 * each page skips what it already had.
 *
 * Each page also holds a lock of its own for as long as it lives, which the leader waits on to learn that it left.
 */
export class LeaderLink implements Link {
  readonly kind = 'leader'
  private readonly channel: BroadcastChannel
  private readonly stop = new AbortController()
  private fanout: Fanout | undefined
  private pending: TabMessage[] | undefined = []
  private readonly releases: Array<() => void> = []
  private readonly watched = new Set<string>()

  constructor (private readonly host: LinkHost) {
    const name = streamName(host.config)
    this.channel = new BroadcastChannel(name)
    this.channel.onmessage = (event: MessageEvent<ChannelMessage>) => this.onChannel(event.data)
    this.hold(tabLockName(host.config, host.tab), () => {
      const pending = this.pending ?? []
      this.pending = undefined
      for (const message of pending) this.send(message)
      this.hold(`${name} leader`, () => this.lead())
    })
  }

  send (message: TabMessage): void {
    if (this.pending !== undefined) this.pending.push(message)
    else if (this.fanout !== undefined) this.receiveAsLeader(message)
    else this.channel.postMessage({ from: 'tab', message } satisfies ChannelMessage)
  }

  close (): void {
    this.send({ kind: 'bye', tab: this.host.tab })
    this.fanout?.close()
    this.fanout = undefined
    this.stop.abort()
    for (const release of this.releases) release()
    this.channel.close()
  }

  /** Takes a lock, runs `granted` once it is ours, and keeps it until the page leaves or closes the link. */
  private hold (name: string, granted: () => void): void {
    navigator.locks.request(name, { signal: this.stop.signal }, async () => {
      granted()
      await new Promise<void>((resolve) => this.releases.push(resolve))
    }).catch(() => {})
  }

  private lead (): void {
    if (this.stop.signal.aborted) return
    // The page's own order: it holds every id any page got from the leaders before, so the new one knows where each is.
    this.fanout = new Fanout({ config: this.host.config, order: this.host.order, token: async () => await this.host.token(), send: (message) => this.broadcast(message) })
    this.broadcast({ kind: 'owner', owner: this.host.tab })
  }

  private broadcast (message: OwnerMessage): void {
    this.channel.postMessage({ from: 'owner', message } satisfies ChannelMessage)
    // A channel does not deliver to its own sender: the leader's page gets its messages here, as late as the others.
    queueMicrotask(() => this.host.receive(message))
  }

  private onChannel (data: ChannelMessage): void {
    if (data.from === 'owner') this.host.receive(data.message)
    else if (this.fanout !== undefined) this.receiveAsLeader(data.message)
  }

  private receiveAsLeader (message: TabMessage): void {
    const fanout = this.fanout
    if (fanout === undefined) return
    if (message.kind === 'hello') {
      if (message.tab !== this.host.tab && message.holdsLock) this.watch(message.tab)
      if (fanout.state.state !== 'closed') this.broadcast({ kind: 'state', state: fanout.state })
    } else {
      fanout.receive(message)
    }
  }

  /** Waits on a page's own lock: granted when the page is gone, and its subscriptions go with it. */
  private watch (tab: string): void {
    if (this.watched.has(tab)) return
    this.watched.add(tab)
    navigator.locks.request(tabLockName(this.host.config, tab), { signal: this.stop.signal }, () => {
      this.watched.delete(tab)
      this.fanout?.removeTab(tab)
    }).catch(() => {})
  }
}
