import type { ChildProcess } from 'node:child_process'
import { rmSync } from 'node:fs'

/** Stops a process a test started (SIGTERM, SIGKILL after 5 s), by its own handle, and removes its temp dir. */
export async function stopChild (child: ChildProcess, dir: string): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
    await exited
    clearTimeout(timer)
  }
  rmSync(dir, { recursive: true, force: true })
}
