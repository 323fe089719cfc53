// Every command, config and code block of README.md and docs/ is run here or compared with what it shows: the
// curl examples against a real Herald (their output against the output blocks beside them), the config table and
// the settings against src/config.ts, the balancer configs against deploy/, the browser snippets in Chromium on a
// page Herald serves under its own CSP. Blocks marked `text` are output: not run, but their ids and notices must
// have the shapes Herald sends.
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { parse as parseYaml } from 'yaml'
import { configTable } from '../src/config.js'
import { parsePosition, parseStreamId, RESET_REASONS, topicTag } from '../src/protocol.js'
import { patternProblem } from '../src/topic-patterns.js'
import { build, publish, until } from './helper.js'
import { launchChromium } from './helpers/browser.js'
import { buildClient } from './helpers/client-build.js'

/** `example`: the name in a `<!-- example: NAME -->` line just above the block, the convention of pages whose own test runs them. */
interface Block { page: string, lang: string, text: string, line: number, example?: string }

const PAGES = ['README.md', ...readdirSync('docs').filter((name) => name.endsWith('.md')).sort().map((name) => `docs/${name}`)]

/** The fenced blocks of a page, in order, with their indentation removed (a block may sit in a list item). */
function blocksOf (page: string): Block[] {
  const text = readFileSync(page, 'utf8')
  return [...text.matchAll(/^( *)```(\w*)\n([\s\S]*?)^\1```$/gm)].map((match) => {
    const indent = match[1] as string
    const body = (match[3] as string).split('\n').map((line) => line.startsWith(indent) ? line.slice(indent.length) : line).join('\n')
    const before = text.slice(0, match.index).split('\n')
    const example = /^<!-- example: (\S+) -->$/.exec(before.at(-2) ?? '')?.[1]
    return { page, lang: match[2] as string, text: body, line: before.length, ...(example === undefined ? {} : { example }) }
  })
}

const TEST_SOURCES = ['test', 'test/helpers'].flatMap((folder) => readdirSync(folder).filter((name) => name.endsWith('.ts')).map((name) => readFileSync(`${folder}/${name}`, 'utf8')))

/** A block another test runs: marked `<!-- example: NAME -->`, its page read by a test and NAME asked for by one. */
function runElsewhere (block: Block): boolean {
  if (block.example === undefined) return false
  assert.ok(TEST_SOURCES.some((source) => source.includes(block.page)), `${where(block)}: example ${block.example}, but no test reads ${block.page}`)
  assert.ok(TEST_SOURCES.some((source) => source.includes(`'${block.example as string}'`)), `${where(block)}: no test runs example ${block.example as string}`)
  return true
}

const BLOCKS = PAGES.flatMap(blocksOf)
const where = (block: Block): string => `${block.page}:${block.line}`

/** A topic's position, `<epoch>-<seq>`, as Herald sends it. */
const isPosition = (id: string): boolean => parsePosition(id) !== undefined
/** A stream's id as Herald sends it: a topic's position, or one tagged position per topic (several of them). */
const isStreamId = (id: string): boolean => isPosition(id) || (id.includes(',') && parseStreamId(id, []).kind === 'positions')

/** SSE output with every id replaced by a placeholder, so a documented stream can be compared with a real one. */
const withoutIds = (text: string): string => text.replace(/^id: .*$/gm, 'id: <id>')

const CONFIG_ROWS = new Map(configTable().split('\n').slice(2).map((row) => {
  const [name = '', fallback = ''] = row.split(' | ')
  return [name.replace(/^\| /, '').replace(/`/g, ''), fallback] as const
}))

function languages (): Map<string, Block[]> {
  const byLanguage = new Map<string, Block[]>()
  for (const block of BLOCKS) byLanguage.set(block.lang, [...(byLanguage.get(block.lang) ?? []), block])
  return byLanguage
}

test('every block says what it is, and each language is one this file checks', () => {
  const known = new Set(['sh', 'text', 'json', 'js', 'ts', 'nginx', 'haproxy', 'caddyfile'])
  for (const block of BLOCKS.filter((block) => !runElsewhere(block))) assert.ok(known.has(block.lang), `${where(block)}: a block marked \`${block.lang}\`; mark output \`text\`, or teach test/docs.test.ts to check it`)
  assert.ok(BLOCKS.length > 20, `blocks found: ${BLOCKS.length}`)
})

test('links between the pages lead to files and headings that exist', () => {
  const slug = (heading: string): string => heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-')
  const anchors = (page: string): Set<string> => new Set(readFileSync(page, 'utf8').replace(/^```[\s\S]*?^```$/gm, '').split('\n').filter((line) => /^#+ /.test(line)).map((line) => slug(line.replace(/^#+ /, ''))))
  for (const page of PAGES) {
    const text = readFileSync(page, 'utf8')
    for (const [, target = ''] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target)) continue
      const [file = '', anchor] = target.split('#')
      const path = file === '' ? page : new URL(file, new URL(page, 'file:///')).pathname.slice(1)
      assert.ok(existsSync(path), `${page}: the link ${target} leads nowhere (${path})`)
      if (anchor !== undefined && path.endsWith('.md')) assert.ok(anchors(path).has(anchor), `${page}: the link ${target}: ${path} has no heading #${anchor}`)
    }
  }
})

test('output blocks show ids and notices the way Herald sends them', () => {
  for (const block of languages().get('text') ?? []) {
    const retry = /^retry: (\d+)$/m.exec(block.text)?.[1]
    for (const [, id = ''] of block.text.matchAll(/^id: (.*)$/gm)) assert.ok(isStreamId(id), `${where(block)}: id ${id} is not an id Herald sends (<epoch>-<seq>, or <tag>:<epoch>-<seq>,…)`)
    const event = /^event: (.*)$/m.exec(block.text)?.[1]
    const data = /^data: (.*)$/m.exec(block.text)?.[1]
    if (event === 'herald.reset') {
      const notice = JSON.parse(data as string)
      assert.deepEqual(Object.keys(notice), ['reason', 'topics', 'lastEventId'], where(block))
      assert.ok((RESET_REASONS as readonly string[]).includes(notice.reason), `${where(block)}: reason ${notice.reason}`)
    }
    if (event === 'herald.unavailable') {
      const notice = JSON.parse(data as string)
      assert.deepEqual(Object.keys(notice), ['reason', 'retryMs'], where(block))
      assert.equal(String(notice.retryMs), retry, `${where(block)}: the retry: line is the notice's retryMs`)
    }
  }
})

test('multi-topic ids shown anywhere carry the real tags of the example topics, chat and alerts', () => {
  const tags = new Set(['chat', 'alerts'].map(topicTag))
  for (const page of PAGES) {
    for (const [id = ''] of readFileSync(page, 'utf8').matchAll(/\b[0-9a-z]{4}:(?:[0-9a-z]{1,16}-\d+)?(?:,[0-9a-z]{4}:(?:[0-9a-z]{1,16}-\d+)?)+(?![\w:.-])/g)) {
      assert.ok(isStreamId(id), `${page}: ${id} is not an id Herald sends`)
      for (const part of id.split(',')) assert.ok(tags.has(part.slice(0, 4)), `${page}: ${id}: ${part.slice(0, 4)} is the tag of neither chat (${topicTag('chat')}) nor alerts (${topicTag('alerts')})`)
    }
  }
})

test('publish replies shown are the shape Herald answers with', () => {
  const replies = (languages().get('json') ?? []).filter((block) => block.text.includes('"duplicate"'))
  assert.ok(replies.length >= 2, 'publish replies found')
  for (const block of replies) {
    const reply = JSON.parse(block.text)
    assert.ok(Array.isArray(reply.ids) && reply.ids.length === reply.topics.length, `${where(block)}: one id per topic`)
    for (const id of reply.ids) assert.ok(isPosition(id), `${where(block)}: ids are <epoch>-<seq> of their topic`)
    const expected = reply.topics.length === 1 ? ['ids', 'topics', 'duplicate', 'id'] : ['ids', 'topics', 'duplicate']
    assert.deepEqual(Object.keys(reply), expected, `${where(block)}: \`id\` is there for an event to one topic only`)
    if (reply.topics.length === 1) assert.equal(reply.id, reply.ids[0], where(block))
  }
  // Inline replies in the reference's tables: a publish's, and a batch's entries (which never carry `id`).
  for (const page of PAGES) {
    for (const [, span = ''] of readFileSync(page, 'utf8').matchAll(/`(\{ "(?:ids|events)": [^`]*"duplicate"[^`]*)`/g)) {
      const reply = JSON.parse(span.replace(/, …/g, ''))
      const entries: Array<Record<string, unknown>> = reply.events ?? [reply]
      for (const entry of entries) {
        const ids = entry.ids as string[]
        assert.ok(ids.every(isPosition) && ids.length === (entry.topics as string[]).length, `${page}: ${span}`)
        const keys = reply.events === undefined && ids.length === 1 ? ['ids', 'topics', 'duplicate', 'id'] : ['ids', 'topics', 'duplicate']
        assert.deepEqual(Object.keys(entry), keys, `${page}: ${span}`)
      }
    }
  }
  for (const block of (languages().get('json') ?? []).filter((block) => !block.text.includes('"duplicate"') && !runElsewhere(block))) {
    const claims = JSON.parse(block.text)
    for (const pattern of [...claims.herald.publish, ...claims.herald.subscribe]) assert.equal(patternProblem(pattern), undefined, `${where(block)}: ${pattern}`)
  }
})

test('config blocks are the files in deploy/, as they are', () => {
  const files: Record<string, string> = { nginx: 'deploy/nginx.conf', haproxy: 'deploy/haproxy.cfg', caddyfile: 'deploy/Caddyfile' }
  for (const [lang, file] of Object.entries(files)) {
    const blocks = languages().get(lang) ?? []
    assert.equal(blocks.length, 1, `one ${lang} block`)
    assert.equal((blocks[0] as Block).text, readFileSync(file, 'utf8'), `${where(blocks[0] as Block)}: copy ${file} in as it is`)
  }
})

test('docs/operations.md lists the alert rules of deploy/prometheus/alerts.yml, with their severities', () => {
  const rules = (parseYaml(readFileSync('deploy/prometheus/alerts.yml', 'utf8')) as { groups: Array<{ rules: Array<{ alert?: string, labels?: { severity?: string } }> }> })
    .groups.flatMap((group) => group.rules).filter((rule) => rule.alert !== undefined).map((rule) => `${rule.alert as string} ${rule.labels?.severity ?? ''}`)
  const page = readFileSync('docs/operations.md', 'utf8')
  const listed = [...page.matchAll(/^\| `(Herald\w+)` \| (\w+) \|/gm)].map((match) => `${match[1] as string} ${match[2] as string}`)
  assert.deepEqual(listed, rules)
})

test('the README\'s settings table agrees with the generated one', () => {
  const readme = readFileSync('README.md', 'utf8')
  const section = readme.slice(readme.indexOf('## Most-used settings'), readme.indexOf('## Production checklist'))
  const rows = section.split('\n').filter((line) => line.startsWith('| `'))
  assert.ok(rows.length >= 8, 'settings rows')
  for (const row of rows) {
    const [names = '', fallbacks = ''] = row.slice(2).split(' | ')
    const listed = [...names.matchAll(/`([A-Z_]+)`/g)].map((match) => match[1] as string)
    const shown = fallbacks.replace(/ \(off\)$/, '').split(', ')
    for (const [index, name] of listed.entries()) {
      assert.ok(CONFIG_ROWS.has(name), `README: ${name} is not a setting`)
      if (names.includes(' or ')) continue
      assert.equal(shown.length === 1 ? shown[0] : shown[index], CONFIG_ROWS.get(name), `README: the default of ${name}`)
    }
  }
})

test('hand-written settings tables in docs/ agree with the generated defaults', () => {
  for (const page of PAGES.filter((page) => page !== 'README.md' && page !== 'docs/configuration.md')) {
    const text = readFileSync(page, 'utf8')
    for (const table of text.split(/\n(?=\| variable \| default \|)/).slice(1)) {
      for (const row of table.split('\n').slice(2).filter((line) => line.startsWith('| `'))) {
        const [name = '', fallback = ''] = row.slice(2).split(' | ')
        const variable = name.replace(/`/g, '')
        assert.ok(CONFIG_ROWS.has(variable), `${page}: ${variable} is not a setting`)
        assert.equal(fallback, CONFIG_ROWS.get(variable), `${page}: the default of ${variable}`)
      }
    }
  }
})

test('the two commands are the ones package.json and .ci/run run', () => {
  const scripts = JSON.parse(readFileSync('package.json', 'utf8')).scripts as Record<string, string>
  const ci = readFileSync('.ci/run', 'utf8')
  for (const step of ['npm ci --engine-strict', 'npm run lint', 'npm run typecheck', 'npm run build', 'npm test']) assert.ok(ci.includes(step), `.ci/run runs ${step}, as the README says`)
  for (const tool of ['redis-server', 'chromium', 'nginx', 'haproxy', 'caddy', 'prometheus']) assert.ok(ci.includes(`missing+=(${tool})`), `.ci/run installs ${tool}, as the README says`)
  assert.match(scripts.start as string, /build/, 'npm start builds first (the browser client too)')
  assert.match(scripts.test as string, /test\/\*\.test\.ts/)
})

/** Command blocks (npm, docker compose, environment + npm): every script, profile and setting they name exists. */
function checkCommands (block: Block): void {
  const scripts = JSON.parse(readFileSync('package.json', 'utf8')).scripts as Record<string, string>
  const compose = parseYaml(readFileSync('docker-compose.yml', 'utf8')) as { services: Record<string, { profiles?: string[] }> }
  const profiles = new Set(Object.values(compose.services).flatMap((service) => service.profiles ?? []))
  for (const raw of block.text.split('\n')) {
    const line = raw.replace(/\s+#.*$/, '').trim()
    if (line === '') continue
    for (const [, name = ''] of line.matchAll(/(?:^|\s)([A-Z][A-Z0-9_]+)=/g)) assert.ok(CONFIG_ROWS.has(name), `${where(block)}: ${name} is not a setting`)
    for (const command of line.split('&&').map((part) => part.trim().replace(/^(?:[A-Z][A-Z0-9_]+=\S+\s+)+/, ''))) {
      if (command === 'npm ci' || command === 'npm start' || command === 'npm test') {
        if (command !== 'npm ci') assert.ok(scripts[command.slice(4)] !== undefined, `${where(block)}: ${command}`)
      } else if (command.startsWith('npm run ')) {
        const script = (command.split(/\s+/)[2] ?? '').replace(/^-s$/, '')
        assert.ok(scripts[script] !== undefined, `${where(block)}: npm run ${script}`)
      } else if (/^docker(?:-| )compose\b/.test(command)) {
        const profile = /--profile (\S+)/.exec(command)?.[1]
        if (profile !== undefined) assert.ok(profiles.has(profile), `${where(block)}: profile ${profile}`)
        assert.match(command, /^docker compose (?:--profile \S+ )?up(?: --build)?$/, `${where(block)}: ${command}`)
      } else {
        assert.fail(`${where(block)}: a command this test neither runs nor checks: ${command}`)
      }
    }
  }
}

/** Runs a shell block against a Herald on `port`, its 127.0.0.1:8080 replaced; resolves with stdout. */
async function runShell (text: string, port: number, env: Record<string, string> = {}, maxSeconds = 3): Promise<string> {
  const script = text.replaceAll('127.0.0.1:8080', `127.0.0.1:${port}`).replace(/^curl /gm, `curl -sS --fail-with-body --max-time ${maxSeconds} `)
  return await new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { err += chunk.toString() })
    child.on('error', reject)
    // curl's --max-time ends a stream with status 28: that is how the subscribe examples stop.
    child.on('close', (code) => code === 0 || code === 28 ? resolve(out) : reject(new Error(`exit ${String(code)}: ${err}\n${script}`)))
  })
}

const portOf = (url: string): number => Number(new URL(url).port)

test('every shell block is run here or checked', async (t) => {
  const readme = BLOCKS.filter((block) => block.page === 'README.md')
  const ran = new Set<Block>()
  const index = (predicate: (block: Block) => boolean): number => {
    const found = readme.findIndex((block) => block.lang === 'sh' && predicate(block))
    assert.ok(found !== -1, 'README example')
    ran.add(readme[found] as Block)
    return found
  }
  const subscribe = index((block) => block.text.startsWith('curl -N \''))
  const publishing = index((block) => block.text.includes('-X POST'))
  const resume = index((block) => block.text.includes('Last-Event-ID'))

  await t.test('README: subscribe, publish and resume, as written, against a real Herald', async () => {
    const { url } = await build(t)
    const port = portOf(url)
    const stream = runShell((readme[subscribe] as Block).text, port, {}, 4)
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const reply = JSON.parse(await runShell((readme[publishing] as Block).text, port))
    const shownReply = readme[publishing + 1] as Block
    assert.equal(shownReply.lang, 'json', 'the publish reply follows the publish')
    const normalize = (value: { ids: string[], id?: string }): string => JSON.stringify({ ...value, ids: value.ids.map(() => '<id>'), ...(value.id === undefined ? {} : { id: '<id>' }) })
    assert.equal(normalize(reply), normalize(JSON.parse(shownReply.text)), 'the reply has the shape shown')
    for (const id of reply.ids) assert.ok(isPosition(id), `${id} is <epoch>-<seq>`)
    const received = await stream
    const shownStream = readme[publishing + 2] as Block
    assert.equal(shownStream.lang, 'text', 'what the subscriber receives follows the reply')
    assert.equal(withoutIds(received), withoutIds(shownStream.text), 'the subscriber receives what is shown')
    assert.match(received, new RegExp(`^id: ${reply.id as string}$`, 'm'), 'the stream\'s id is the reply\'s')
    const resumed = await runShell((readme[resume] as Block).text, port, {}, 2)
    assert.equal(resumed, (readme[resume + 1] as Block).text, 'the resume with a plain number gets the reset shown')
  })

  await t.test('docs: each publish with a development token, as written, against a Herald with that secret', async () => {
    for (const block of BLOCKS.filter((block) => block.lang === 'sh' && block.text.includes('$TOKEN') && !runElsewhere(block))) {
      const secret = /HERALD_JWT_SECRET='([^']+)'/.exec(block.text)?.[1]
      assert.ok(secret !== undefined, `${where(block)}: the secret`)
      const { url } = await build(t, { HERALD_JWT_SECRET: secret })
      const output = await runShell(block.text, portOf(url), {}, 10)
      const reply = JSON.parse(output)
      assert.deepEqual(reply.topics, ['chat'], where(block))
      assert.ok(isPosition(reply.id), where(block))
      ran.add(block)
    }
  })

  await t.test('every other curl example succeeds against a real Herald, and the ids it answers with are Herald\'s', async () => {
    const { url } = await build(t)
    for (const block of BLOCKS.filter((block) => block.lang === 'sh' && /\bcurl\b/.test(block.text) && !ran.has(block) && !runElsewhere(block))) {
      const output = await runShell(block.text, portOf(url), {}, 2)
      for (const [, id = ''] of output.matchAll(/"([0-9a-z]{1,16}-\d+)"/g)) assert.ok(isPosition(id), where(block))
      for (const [, id = ''] of output.matchAll(/^id: (.*)$/gm)) assert.ok(isStreamId(id), `${where(block)}: ${id}`)
      ran.add(block)
    }
  })

  await t.test('the other shell blocks: commands whose scripts, profiles and settings exist', () => {
    for (const block of BLOCKS.filter((block) => block.lang === 'sh' && !ran.has(block) && !runElsewhere(block))) {
      if (/\bcurl\b/.test(block.text)) assert.fail(`${where(block)}: a curl example no test runs: run it in test/docs.test.ts`)
      checkCommands(block)
    }
  })
})

test('code blocks: the README\'s browser snippets are the files in public/examples/; the others are run elsewhere', () => {
  for (const block of [...languages().get('js') ?? [], ...languages().get('ts') ?? []].filter((block) => !runElsewhere(block))) {
    const file = /^\/\/ (\S+\.js)\n/.exec(block.text)?.[1]
    if (file !== undefined) {
      assert.equal(block.text, readFileSync(`public/examples/${file}`, 'utf8'), `${where(block)}: public/examples/${file} is this block`)
      continue
    }
    if (block.text.includes('@microsoft/fetch-event-source')) {
      assert.match(readFileSync('test/browser-fetch-event-source.test.ts', 'utf8'), new RegExp(block.page.replace('.', '\\.')), `${where(block)}: run by test/browser-fetch-event-source.test.ts`)
      continue
    }
    // The client's options, as the reference shows them: every name is one the client declares.
    assert.ok(block.text.includes('createHerald'), `${where(block)}: a code block this test neither runs nor checks`)
    const source = readdirSync('client/src').map((name) => readFileSync(`client/src/${name}`, 'utf8')).join('\n')
    for (const [, name = ''] of block.text.matchAll(/^\s+(\w+)(?: \(|:)/gm)) assert.match(source, new RegExp(`\\b${name}\\??[:(]`), `${where(block)}: the client has no option ${name}`)
  }
})

test('the README\'s browser snippets work on a page Herald serves, under its CSP', { timeout: 90_000 }, async (t) => {
  buildClient()
  const { url } = await build(t)
  const chromium = await launchChromium()
  t.after(chromium.close)
  for (const name of ['chat-feed', 'chat-client']) {
    const page = await chromium.browser.newPage()
    const problems: string[] = []
    page.on('console', (message) => { if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) problems.push(message.text()) })
    page.on('response', (answer) => { if (answer.status() >= 400 && !answer.url().endsWith('/favicon.ico')) problems.push(`${answer.status()} ${answer.url()}`) })
    page.on('pageerror', (error) => problems.push(error.message))
    const response = await page.goto(`${url}/examples/${name}.html`)
    assert.match(response?.headers()['content-security-policy'] ?? '', /script-src 'self'/, 'the page is served under the pages\' CSP')
    // The stream is open once a publish reaches it: publish until the page shows one.
    await until(async () => {
      await publish(url, { topic: 'chat', type: 'message', data: { user: 'ada', text: `hello from ${name}` } })
      return await page.locator('#feed li').count() > 0
    }, 20_000)
    assert.equal(await page.locator('#feed li').first().textContent(), `hello from ${name}`)
    assert.deepEqual(problems, [], `${name}: no console errors (CSP included)`)
    await page.close()
  }
})

/** The first of `count` consecutive ports from `from` (below `to`) that, with each port + 10000, nothing listens on. */
async function freePortRun (count: number, from: number, to: number): Promise<number> {
  const free = async (port: number): Promise<boolean> => await new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
  for (let base = from; base + count <= to; base += count) {
    let all = true
    for (let port = base; all && port < base + count; port++) all = await free(port) && await free(port + 10_000)
    if (all) return base
  }
  throw new Error(`no ${count} free ports (and bus ports) between ${from} and ${to}`)
}

test('docs/redis.md: the example \'cluster-setup\' builds a cluster of 3 masters and 3 replicas', { timeout: 90_000, skip: spawnSync('redis-server', ['--version']).status !== 0 }, async (t) => {
  const block = BLOCKS.find((candidate) => candidate.page === 'docs/redis.md' && candidate.example === 'cluster-setup')
  assert.ok(block !== undefined, 'the example')
  // Its ports (7000-7005) move to six free ones whose cluster bus ports (+10000) are free too, both below the
  // kernel's ephemeral range, so no outgoing connection of the run takes one meanwhile; run in a directory of its
  // own for the nodes-*.conf.
  const ports = [7000, 7001, 7002, 7003, 7004, 7005]
  const base = await freePortRun(ports.length, 20_000, 22_700)
  const moved = (port: number): number => port - 7000 + base
  const script = block.text.replace(/\b700([0-5])\b/g, (_whole, digit: string) => String(moved(7000 + Number(digit))))
  const directory = mkdtempSync(join(tmpdir(), 'herald-docs-cluster-'))
  t.after(() => {
    // The example daemonizes its servers: stop each by its port, then remove their files.
    for (const port of ports) spawnSync('redis-cli', ['-p', String(moved(port)), 'shutdown', 'nosave'], { timeout: 5_000 })
    rmSync(directory, { recursive: true, force: true })
  })
  const run = spawnSync('bash', ['-c', script], { cwd: directory, encoding: 'utf8', timeout: 60_000 })
  assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`)
  await until(() => /cluster_state:ok/.test(spawnSync('redis-cli', ['-p', String(moved(7000)), 'cluster', 'info'], { encoding: 'utf8' }).stdout), 30_000, 'cluster_state:ok')
  const info = spawnSync('redis-cli', ['-p', String(moved(7000)), 'cluster', 'info'], { encoding: 'utf8' }).stdout
  assert.match(info, /cluster_known_nodes:6/)
  assert.match(info, /cluster_size:3/)
})
