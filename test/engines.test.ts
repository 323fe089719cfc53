import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import semver from 'semver'

interface LockEntry { version?: string, engines?: Record<string, string> | string[], hasInstallScript?: boolean }

const manifest = JSON.parse(readFileSync('package.json', 'utf8')) as { engines: { node: string }, allowScripts?: Record<string, boolean> }
const lock = JSON.parse(readFileSync('package-lock.json', 'utf8')) as { packages: Record<string, LockEntry> }
const declared = manifest.engines.node

test('package.json declares a Node range, the lockfile agrees, and this machine runs inside it', () => {
  assert.ok(semver.validRange(declared) !== null, `engines.node ${JSON.stringify(declared)} is a semver range`)
  assert.deepEqual(lock.packages['']?.engines, { node: declared }, 'package-lock.json is out of date: run npm install')
  assert.ok(semver.satisfies(process.version, declared), `Node ${process.version} is outside engines.node ${declared}`)
})

// npm ci warns EBADENGINE (and fails with --engine-strict, as .ci/run runs it) for any installed package whose
// engines exclude the running Node. Every Node that package.json accepts must satisfy every package, so the check
// is that the declared range is a subset of each package's range, not only that this machine's version fits.
test('every package in the lockfile accepts every Node version package.json declares', () => {
  const mismatches: string[] = []
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (path === '' || entry.engines === undefined || Array.isArray(entry.engines)) continue
    const wanted = entry.engines.node
    if (wanted === undefined) continue
    const name = path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length)
    if (semver.validRange(wanted) === null) mismatches.push(`${name}@${entry.version}: engines.node ${JSON.stringify(wanted)} is not a range`)
    else if (!semver.subset(declared, wanted)) mismatches.push(`${name}@${entry.version} wants Node ${wanted}`)
  }
  assert.deepEqual(mismatches, [], `engines.node is ${declared}; pick versions (or npm overrides) that accept it, or narrow it`)
})

// npm 11 warns (`install-scripts … allowScripts`) on every install for each package with an install script that
// package.json's allowScripts does not name, and npm 12 skips its script. Approve one after reading its script with
// `npm install-scripts approve <name>`, or deny it (false) when the package works without it.
test('every package with an install script is reviewed in allowScripts', () => {
  const reviewed = manifest.allowScripts ?? {}
  const unreviewed: string[] = []
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (entry.hasInstallScript !== true) continue
    const name = path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length)
    const entries = Object.keys(reviewed).filter((key) => key === name || (key.startsWith(`${name}@`) && semver.satisfies(entry.version ?? '', key.slice(name.length + 1))))
    if (entries.length === 0) unreviewed.push(`${name}@${String(entry.version)}`)
  }
  assert.deepEqual(unreviewed, [], 'run npm install-scripts approve (or deny) for each')
})
