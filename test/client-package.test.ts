import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { test } from 'node:test'
import { build } from './helper.js'
import { buildClient } from './helpers/client-build.js'

buildClient()

test('Herald serves the client\'s modules at /client/, not its type declarations', async (t) => {
  const { url } = await build(t)
  for (const path of ['/client/herald-client.js', '/client/herald-worker.js', '/client/fanout.js']) {
    const response = await fetch(`${url}${path}`)
    assert.equal(response.status, 200, path)
    assert.match(response.headers.get('content-type') ?? '', /^(application|text)\/javascript/, path)
    assert.equal(await response.text(), readFileSync(`client/dist${path.slice('/client'.length)}`, 'utf8'))
  }
  assert.equal((await fetch(`${url}/client/herald-client.d.ts`)).status, 404)
})

test('client/ packs for npm: the built modules, their types, the README; exports and types point into the pack', { timeout: 120_000 }, () => {
  // As a maintainer runs it: prepack builds first.
  const run = spawnSync('npm', ['pack', '--dry-run', '--json'], { cwd: 'client', encoding: 'utf8' })
  assert.equal(run.status, 0, run.stderr)
  const [pack] = JSON.parse(run.stdout.slice(run.stdout.indexOf('\n[') + 1)) as Array<{ name: string, files: Array<{ path: string }> }>
  assert.equal(pack?.name, 'herald-client')
  const files = new Set(pack?.files.map((file) => file.path))
  for (const path of ['package.json', 'README.md', 'dist/herald-client.js', 'dist/herald-client.d.ts', 'dist/herald-worker.js', 'dist/fanout.js']) {
    assert.ok(files.has(path), `${path} is in the package`)
  }
  assert.ok([...files].every((path) => path === 'package.json' || path === 'README.md' || path.startsWith('dist/')), [...files].join(', '))
  const manifest = JSON.parse(readFileSync('client/package.json', 'utf8'))
  assert.equal(manifest.type, 'module')
  for (const target of [manifest.types, manifest.exports['.'].types, manifest.exports['.'].default, manifest.exports['./herald-worker.js']]) {
    assert.ok(files.has(String(target).replace(/^\.\//, '')), `${target} is in the package`)
  }
})

test('a TypeScript app that installs herald-client gets its types', { timeout: 60_000 }, (t) => {
  const app = mkdtempSync(join(tmpdir(), 'herald-client-app-'))
  t.after(() => rmSync(app, { recursive: true, force: true }))
  mkdirSync(join(app, 'node_modules'))
  symlinkSync(resolve('client'), join(app, 'node_modules', 'herald-client'))
  writeFileSync(join(app, 'app.ts'), [
    "import { createHerald, type HeraldEvent, type StreamState } from 'herald-client'",
    "const herald = createHerald({ url: '/v1/stream', token: async () => 'jwt', shared: true })",
    'const seen: Array<HeraldEvent<{ text: string }>> = []',
    "const sub = herald.subscribe<{ text: string }>(['chat'], {",
    '  onEvent (event) { seen.push(event); const text: string = event.data.text; console.log(event.topic, event.id, event.type, text) },',
    '  onReset (notice) { console.log(notice.reason, notice.topics) },',
    '  onState (state: StreamState) { console.log(state.state, state.attempt) }',
    '})',
    'sub.close()',
    'herald.close()',
    ''
  ].join('\n'))
  writeFileSync(join(app, 'wrong.ts'), "import { createHerald } from 'herald-client'\ncreateHerald({ url: '/v1/stream' }).subscribe('chat')\n")
  writeFileSync(join(app, 'package.json'), JSON.stringify({ type: 'module', private: true }))
  const compilerOptions = { strict: true, noEmit: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', lib: ['es2022', 'dom'], types: [] }
  for (const file of ['app.ts', 'wrong.ts']) writeFileSync(join(app, `${file}.json`), JSON.stringify({ compilerOptions, files: [file] }))
  const compile = (file: string) => spawnSync(process.execPath, [resolve('node_modules/typescript/bin/tsc'), '-p', `${file}.json`], { cwd: app, encoding: 'utf8' })
  const good = compile('app.ts')
  assert.equal(good.status, 0, good.stdout)
  // The types are real: a wrong call does not compile.
  const wrong = compile('wrong.ts')
  assert.notEqual(wrong.status, 0)
  assert.match(wrong.stdout, /not assignable to parameter of type 'string\[\]'/)
})
