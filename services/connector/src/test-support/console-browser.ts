import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import AxeBuilder from '@axe-core/playwright';
import { chromium } from 'playwright-core';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { REPO_ROOT } from './paths.ts';

/**
 * Screenshots go to a scratch folder unless CONSOLE_SCREENSHOTS_DIR names one (the README's
 * pictures: `CONSOLE_SCREENSHOTS_DIR=docs/console npx vitest run services/connector/src/console`).
 */
const SHOTS = process.env.CONSOLE_SCREENSHOTS_DIR
  ? path.resolve(REPO_ROOT, process.env.CONSOLE_SCREENSHOTS_DIR)
  : path.join(tmpdir(), 'warden-console-shots');

export interface ConsoleBrowser {
  readonly browser: Browser;
  readonly context: BrowserContext;
  readonly page: Page;
  /** What the page logged as errors so far. */
  readonly consoleErrors: string[];
  /** A picture of the page as it is now, as `<name>.png`. */
  shot(name: string, options?: { fullPage?: boolean }): Promise<void>;
  /** Serious and critical axe findings (WCAG 2.1 A and AA) on `target` (the page by default). */
  accessibilityProblems(target?: Page): Promise<string[]>;
  close(): Promise<void>;
}

/**
 * Debian's Chromium, headless, with one page on `base` (desktop size, clipboard allowed) whose
 * console errors are kept.
 */
export async function openConsoleBrowser(base: string): Promise<ConsoleBrowser> {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-background-networking'],
  });
  const context = await browser.newContext({ viewport: { width: 1360, height: 860 } });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  const page = await context.newPage();
  const consoleErrors: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(message.text());
  });
  return {
    browser,
    context,
    page,
    consoleErrors,
    async shot(name, options = {}) {
      mkdirSync(SHOTS, { recursive: true });
      await page.screenshot({ path: path.join(SHOTS, `${name}.png`), ...options });
    },
    async accessibilityProblems(target = page) {
      const results = await new AxeBuilder({ page: target })
        .withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'])
        .analyze();
      return results.violations
        .filter((v) => v.impact === 'serious' || v.impact === 'critical')
        .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
    },
    close: () => browser.close(),
  };
}
