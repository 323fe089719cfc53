import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, normalize } from 'node:path'
import { test } from 'node:test'

/** Every .ts file under the app's folders, with the project files it imports (type-only imports included). */
function importGraph (roots: string[]): Map<string, string[]> {
  const files: string[] = []
  const walk = (folder: string): void => {
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name)
      if (entry.isDirectory()) walk(path)
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) files.push(path)
    }
  }
  for (const root of roots) walk(root)
  const graph = new Map<string, string[]>()
  for (const file of files) {
    const text = readFileSync(file, 'utf8')
    const imports = [...text.matchAll(/(?:import|export)\s[^'"]*?from\s+['"](\.[^'"]+)['"]/g)]
      .map((match) => normalize(join(dirname(file), match[1] as string)).replace(/\.js$/, '.ts'))
      .filter((target) => files.includes(target))
    graph.set(file, imports)
  }
  return graph
}

function cycles (graph: Map<string, string[]>): string[] {
  const found: string[] = []
  const state = new Map<string, 'open' | 'done'>()
  const stack: string[] = []
  const visit = (file: string): void => {
    state.set(file, 'open')
    stack.push(file)
    for (const target of graph.get(file) ?? []) {
      if (state.get(target) === 'open') found.push([...stack.slice(stack.indexOf(target)), target].join(' -> '))
      else if (!state.has(target)) visit(target)
    }
    stack.pop()
    state.set(file, 'done')
  }
  for (const file of graph.keys()) if (!state.has(file)) visit(file)
  return found
}

test('no import cycle in src/, plugins/ or routes/', () => {
  const graph = importGraph(['src', 'plugins', 'routes'])
  assert.ok(graph.size > 20, `found only ${graph.size} files: run from the project root`)
  assert.deepEqual(cycles(graph), [])
})

test('src/sse imports nothing from the rest of Herald; the transports import nothing from the hub', () => {
  const graph = importGraph(['src', 'plugins', 'routes'])
  for (const [file, imports] of graph) {
    if (file.startsWith('src/sse/')) assert.deepEqual(imports.filter((target) => !target.startsWith('src/sse/')), [], file)
    if (file.startsWith('src/transport/')) assert.deepEqual(imports.filter((target) => target.startsWith('src/hub/')), [], file)
    // app.ts and server.ts assemble the Fastify app: they are the only part of src/ that knows plugins and routes.
    if (file.startsWith('src/') && file !== 'src/app.ts' && file !== 'src/server.ts') assert.deepEqual(imports.filter((target) => !target.startsWith('src/')), [], `${file} imports plugins or routes`)
  }
})

test('the cycle finder finds a cycle', () => {
  assert.deepEqual(cycles(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]])), ['a -> b -> c -> a'])
})
