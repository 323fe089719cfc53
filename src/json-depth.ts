/** How deep published `data` may nest. JSON.stringify recurses, so an unbounded depth could exhaust the stack. */
export const MAX_DATA_DEPTH = 64

/** True when a parsed JSON value nests arrays/objects deeper than `limit`; iterative, so any input is safe. */
export function nestsDeeperThan (value: unknown, limit: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]]
  while (stack.length > 0) {
    const [current, depth] = stack.pop() as [unknown, number]
    if (current === null || typeof current !== 'object') continue
    if (depth + 1 > limit) return true
    for (const child of Array.isArray(current) ? current : Object.values(current)) {
      if (child !== null && typeof child === 'object') stack.push([child, depth + 1])
    }
  }
  return false
}
