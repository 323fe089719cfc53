import { readFileSync } from 'node:fs'

const DOC = new URL('../../docs/redis.md', import.meta.url)

/** The code block after `<!-- example: <name> -->` in docs/redis.md, so tests run what the doc shows. */
export function docExample (name: string): string {
  const text = readFileSync(DOC, 'utf8')
  const match = new RegExp(`<!-- example: ${name} -->\\n\`\`\`\\w*\\n([\\s\\S]*?)\`\`\``).exec(text)
  if (match?.[1] === undefined) throw new Error(`docs/redis.md has no example named ${name}`)
  return match[1]
}

/** The variables of an example of NAME=value lines, with each documented port replaced by the test's. */
export function docEnv (name: string, ports: Record<number, number> = {}): Record<string, string> {
  const env: Record<string, string> = {}
  for (const line of docExample(name).split('\n')) {
    const match = /^([A-Z_]+)=(.*)$/.exec(line.trim())
    if (match?.[1] !== undefined && match[2] !== undefined) env[match[1]] = withPorts(match[2], ports)
  }
  return env
}

/** The words of a one-command shell example (continuation lines joined, quotes and backslash escapes removed). */
export function docCommand (name: string): string[] {
  const text = docExample(name).replace(/\\\n/g, ' ')
  const words: string[] = []
  for (const match of text.matchAll(/'([^']*)'|((?:\\.|[^\s'])+)/g)) {
    words.push(match[1] ?? (match[2] ?? '').replace(/\\(.)/g, '$1'))
  }
  return words
}

function withPorts (value: string, ports: Record<number, number>): string {
  return value.replace(/:(\d{2,5})(?=[,/]|$)/g, (whole, port: string) => {
    const replacement = ports[Number(port)]
    return replacement === undefined ? whole : `:${replacement}`
  })
}
