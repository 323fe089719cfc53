import { chromium, type Browser } from 'playwright-core'

/** Debian's Chromium, headless, with the flags this sandboxed, offline machine needs (a fresh profile each time). */
export async function launchChromium (): Promise<{ browser: Browser, close: () => Promise<void> }> {
  const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'
    ]
  })
  return {
    browser,
    close: async () => await browser.close()
  }
}
