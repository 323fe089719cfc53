import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { Cluster, Redis } from 'ioredis'
import { freePort } from './redis-server.js'

const run = promisify(execFile)

/** One redis-server of the cluster, on 127.0.0.1:port. */
export interface ClusterNode {
  port: number
  /** The running process, undefined while the node is killed. */
  process: ChildProcess | undefined
}

/** A master as the cluster sees it now. */
export interface ClusterMaster {
  port: number
  id: string
  /** Slot ranges it owns, [first, last] inclusive. */
  slots: Array<[number, number]>
  /** How many slots that is. */
  slotCount: number
  /** The ports of its replicas that are up. */
  replicaPorts: number[]
}

export interface RedisClusterOptions {
  /** Masters (default 3). */
  masters?: number
  /**
   * Replicas per master (default 1). 0 starts only the masters: half the processes, for tests that do not fail a
   * master over.
   */
  replicas?: number
  /** --cluster-node-timeout, ms (default 1000): a killed master's replica is promoted after about twice this. */
  nodeTimeoutMs?: number
  /** Extra redis-server arguments for every node (e.g. TLS or ACL settings). */
  serverArgs?: string[]
}

/** What `redis-cli` needs to reach a node: its own arguments for TLS or a password, if the nodes need them. */
const PROBE_OPTIONS = { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 1_000, commandTimeout: 2_000 }

/**
 * A real Redis Cluster on loopback that the test owns: masters × (1 master + `replicas` replicas) redis-servers with
 * --cluster-enabled, joined by `redis-cli --cluster create --cluster-replicas <replicas>`, ready when every node says
 * cluster_state:ok. Every process is stopped by PID in `stop` (call it in t.after). Every wait is bounded.
 */
export class RedisCluster {
  readonly directory = mkdtempSync(join(tmpdir(), 'herald-cluster-'))
  private stopped = false
  private adminClient: Cluster | undefined

  private constructor (readonly nodes: ClusterNode[], private readonly options: Required<RedisClusterOptions>) {}

  static async start (options: RedisClusterOptions = {}): Promise<RedisCluster> {
    const filled: Required<RedisClusterOptions> = { masters: 3, replicas: 1, nodeTimeoutMs: 1_000, serverArgs: [], ...options }
    const ports: number[] = []
    while (ports.length < filled.masters * (1 + filled.replicas)) {
      const port = await freePort()
      // The cluster bus listens on port + 10000: both must be free, and distinct from the other nodes'.
      if (port > 55_000 || ports.includes(port) || ports.some((other) => Math.abs(other - port) === 10_000)) continue
      ports.push(port)
    }
    const cluster = new RedisCluster(ports.map((port) => ({ port, process: undefined })), filled)
    try {
      await Promise.all(cluster.nodes.map(async (node) => await cluster.startNode(node)))
      await run('redis-cli', ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', String(filled.replicas), '--cluster-yes'], { timeout: 30_000 })
      await cluster.waitForState('ok', 30_000)
      await cluster.waitForReplicasInSync(30_000)
    } catch (error) {
      await cluster.stop()
      throw error
    }
    return cluster
  }

  /** redis://127.0.0.1:<port of the first node>: any node's URL is enough for Herald. */
  get url (): string {
    return this.urlOf(this.nodes[0]?.port ?? 0)
  }

  urlOf (port: number): string {
    return `redis://127.0.0.1:${port}`
  }

  node (port: number): ClusterNode {
    const node = this.nodes.find((candidate) => candidate.port === port)
    if (node === undefined) throw new Error(`no cluster node on port ${port}`)
    return node
  }

  /** A plain client to one node, for assertions; the caller disconnects it. */
  client (port: number): Redis {
    const client = new Redis(port, '127.0.0.1', PROBE_OPTIONS)
    client.on('error', () => {})
    return client
  }

  /**
   * One cluster client for assertions, made on first use and shared until `stop`: commands on a key go to the
   * key's owner; `nodes('master')` reaches every master (SCAN, KEYS, PUBSUB SHARDNUMSUB on a slot's owner).
   */
  async admin (): Promise<Cluster> {
    if (this.adminClient === undefined) {
      this.adminClient = new Cluster([{ host: '127.0.0.1', port: this.nodes[0]?.port ?? 0 }])
      this.adminClient.on('error', () => {})
    }
    const client = this.adminClient
    const deadline = Date.now() + 10_000
    while (client.status !== 'ready') {
      if (Date.now() > deadline) throw new Error(`the admin cluster client is ${client.status}, not ready, after 10 s`)
      await sleep(20)
    }
    return client
  }

  /** Runs one command on one node and disconnects. */
  async command (port: number, name: string, ...args: string[]): Promise<unknown> {
    const client = this.client(port)
    try {
      await client.connect()
      return await client.call(name, ...args)
    } finally {
      client.disconnect()
    }
  }

  /** The masters that own slots, as a live node sees the cluster now, in port order. */
  async masters (): Promise<ClusterMaster[]> {
    let lastError: unknown
    for (const node of this.nodes.filter((candidate) => candidate.process !== undefined)) {
      try {
        return parseClusterNodes(String(await this.command(node.port, 'CLUSTER', 'NODES')))
      } catch (error) {
        lastError = error
      }
    }
    throw new Error(`no cluster node answered CLUSTER NODES: ${String(lastError)}`)
  }

  /** The master that owns a slot now. */
  async masterOfSlot (slot: number): Promise<ClusterMaster> {
    const master = (await this.masters()).find((candidate) => candidate.slots.some(([first, last]) => slot >= first && slot <= last))
    if (master === undefined) throw new Error(`no master owns slot ${slot}`)
    return master
  }

  /**
   * SIGKILLs a master (as a crash would) and waits, at most `withinMs`, until one of its replicas owns its slots and
   * every live node says cluster_state:ok. Returns the promoted replica's port and how long the promotion took.
   */
  async killMaster (port: number, withinMs = 30_000): Promise<{ promotedPort: number, ms: number }> {
    const before = (await this.masters()).find((master) => master.port === port)
    if (before === undefined) throw new Error(`127.0.0.1:${port} is not a master that owns slots`)
    const started = Date.now()
    await this.kill(port)
    const deadline = started + withinMs
    while (Date.now() < deadline) {
      try {
        const owner = await this.masterOfSlot(before.slots[0]?.[0] ?? 0)
        if (owner.port !== port && await this.stateIs('ok')) return { promotedPort: owner.port, ms: Date.now() - started }
      } catch {}
      await sleep(100)
    }
    throw new Error(`no replica of 127.0.0.1:${port} was promoted within ${withinMs} ms`)
  }

  /** SIGKILLs a node and waits for it to exit. */
  async kill (port: number): Promise<void> {
    await signal(this.node(port), 'SIGKILL')
  }

  /** SIGSTOPs a node: its connections stay open and nothing answers (a hung Redis). `resume` or `stop` undoes it. */
  pause (port: number): void {
    this.node(port).process?.kill('SIGSTOP')
  }

  resume (port: number): void {
    this.node(port).process?.kill('SIGCONT')
  }

  /**
   * Starts a killed node again on its port with its cluster config file: it rejoins, as a replica when its slots
   * went to another master meanwhile. Waits until every live node says cluster_state:ok.
   */
  async restart (port: number, withinMs = 30_000): Promise<void> {
    const node = this.node(port)
    if (node.process !== undefined) throw new Error(`127.0.0.1:${port} is still running`)
    await this.startNode(node)
    await this.waitForState('ok', withinMs)
    await this.waitForReplicasInSync(withinMs)
  }

  /** `redis-cli --cluster reshard`: moves `slots` slots from one master to another, then waits for cluster_state:ok. */
  async reshard (fromPort: number, toPort: number, slots: number, withinMs = 60_000): Promise<void> {
    const masters = await this.masters()
    const id = (port: number) => {
      const master = masters.find((candidate) => candidate.port === port)
      if (master === undefined) throw new Error(`127.0.0.1:${port} is not a master`)
      return master.id
    }
    await run('redis-cli', ['--cluster', 'reshard', `127.0.0.1:${fromPort}`, '--cluster-from', id(fromPort), '--cluster-to', id(toPort),
      '--cluster-slots', String(slots), '--cluster-yes'], { timeout: withinMs })
    await this.waitForState('ok', withinMs)
  }

  /** True when every live node says cluster_state:<state> and sees the same slots as owned. */
  async stateIs (state: 'ok' | 'fail'): Promise<boolean> {
    for (const node of this.nodes) {
      if (node.process === undefined) continue
      try {
        const info = String(await this.command(node.port, 'CLUSTER', 'INFO'))
        if (!info.includes(`cluster_state:${state}`)) return false
      } catch {
        return false
      }
    }
    return true
  }

  async waitForState (state: 'ok' | 'fail', withinMs: number): Promise<void> {
    const deadline = Date.now() + withinMs
    while (Date.now() < deadline) {
      if (await this.stateIs(state)) return
      await sleep(100)
    }
    throw new Error(`the cluster did not reach cluster_state:${state} within ${withinMs} ms`)
  }

  /** Waits until every live replica has synced with its master (master_link_status:up). */
  async waitForReplicasInSync (withinMs: number): Promise<void> {
    const deadline = Date.now() + withinMs
    while (Date.now() < deadline) {
      let synced = true
      for (const node of this.nodes) {
        if (node.process === undefined) continue
        try {
          const info = String(await this.command(node.port, 'INFO', 'replication'))
          if (info.includes('role:slave') && !info.includes('master_link_status:up')) synced = false
        } catch {
          synced = false
        }
      }
      if (synced) return
      await sleep(100)
    }
    throw new Error(`the replicas did not sync with their masters within ${withinMs} ms`)
  }

  /** Stops every node (SIGKILL: nothing to keep) and removes their files. */
  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    this.adminClient?.disconnect()
    await Promise.all(this.nodes.map(async (node) => {
      node.process?.kill('SIGCONT')
      await signal(node, 'SIGKILL')
    }))
    rmSync(this.directory, { recursive: true, force: true })
  }

  private async startNode (node: ClusterNode): Promise<void> {
    const args = ['--port', String(node.port), '--bind', '127.0.0.1', '--dir', this.directory, '--save', '', '--appendonly', 'no',
      '--cluster-enabled', 'yes', '--cluster-node-timeout', String(this.options.nodeTimeoutMs),
      '--cluster-config-file', `nodes-${node.port}.conf`,
      // A replica may take over however long ago it last heard from its master: a test kills masters at any time.
      '--cluster-replica-validity-factor', '0', '--logfile', `redis-${node.port}.log`, ...this.options.serverArgs]
    const child = spawn('redis-server', args, { stdio: 'ignore' })
    node.process = child
    child.once('exit', () => { if (node.process === child) node.process = undefined })
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline) {
      try {
        await this.command(node.port, 'PING')
        return
      } catch {
        if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode} on port ${node.port} (log: ${this.directory}/redis-${node.port}.log)`)
        await sleep(50)
      }
    }
    throw new Error(`redis-server did not answer on port ${node.port} within 10 s`)
  }
}

async function signal (node: ClusterNode, name: NodeJS.Signals): Promise<void> {
  const child = node.process
  node.process = undefined
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill(name)
  await exited
}

/** The masters that own slots, from CLUSTER NODES text, in port order. */
export function parseClusterNodes (text: string): ClusterMaster[] {
  const lines = text.trim().split('\n').map((line) => {
    const [id = '', address = '', flags = '', masterId = '', , , , , ...slotFields] = line.trim().split(' ')
    return { id, address, flags, masterId, slotFields }
  })
  const portOf = (address: string) => Number(address.split('@')[0]?.split(':').at(-1))
  const masters: ClusterMaster[] = []
  for (const { id, address, flags, slotFields } of lines) {
    if (!flags.split(',').includes('master') || flags.includes('fail')) continue
    const slots = slotFields.filter((field) => !field.startsWith('[')).map((field) => {
      const [first = 0, last = first] = field.split('-').map(Number)
      return [first, last] as [number, number]
    })
    if (slots.length === 0) continue
    const replicaPorts = lines
      .filter((line) => line.masterId === id && line.flags.includes('slave') && !line.flags.includes('fail'))
      .map((line) => portOf(line.address))
    masters.push({ port: portOf(address), id, slots, slotCount: slots.reduce((sum, [first, last]) => sum + last - first + 1, 0), replicaPorts })
  }
  return masters.sort((a, b) => a.port - b.port)
}
