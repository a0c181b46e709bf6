// Headless Debian Chromium for the dashboard tests (not re-exported by index.ts: only the tests
// that drive a page load playwright-core).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BrowserContext, chromium, Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
/** Chromium on a machine without network stalls on its background fetches unless told not to make them. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface HeadlessChromium {
  readonly browser: BrowserContext;
  /** The first page, with `pageerror` messages collected into `pageErrors`. */
  readonly page: Page;
  readonly pageErrors: string[];
  /** Closes the browser and removes its profile directory. */
  close(): Promise<void>;
}

/** A headless Chromium with a fresh profile directory; `timeoutMs` is the page's default timeout. */
export async function launchChromium(
  opts: { viewport?: { width: number; height: number }; timeoutMs?: number } = {},
): Promise<HeadlessChromium> {
  const profileDir = mkdtempSync(join(tmpdir(), 'stratum-chromium-'));
  let browser: BrowserContext;
  try {
    browser = await chromium.launchPersistentContext(profileDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      ...(opts.viewport === undefined ? {} : { viewport: opts.viewport }),
    });
  } catch (err) {
    rmSync(profileDir, { recursive: true, force: true });
    throw err;
  }
  const page = browser.pages()[0] ?? (await browser.newPage());
  if (opts.timeoutMs !== undefined) {
    page.setDefaultTimeout(opts.timeoutMs);
  }
  const pageErrors: string[] = [];
  page.on('pageerror', (err) => pageErrors.push(err.message));
  return {
    browser,
    page,
    pageErrors,
    async close() {
      try {
        await browser.close();
      } finally {
        rmSync(profileDir, { recursive: true, force: true });
      }
    },
  };
}
