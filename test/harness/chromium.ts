import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { tempDir } from "./temp-dirs.js";

export const CHROMIUM = "/usr/bin/chromium";

/**
 * Debian's Chromium, headless, with a fresh profile (playwright gives launch() a new
 * --user-data-dir of its own and removes it); one per test file (2-core CI). Chromium's own
 * temporary files (.org.chromium.Chromium.*) go to a tempDir() of the test file: the browser does
 * not always remove them before close() returns, and they are removed with the file's other
 * directories once the browser is gone.
 */
export async function launchChromium(): Promise<{ context: (options?: { viewport?: { width: number; height: number }; ignoreHTTPSErrors?: boolean }) => Promise<BrowserContext>; close: () => Promise<void> }> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    env: { ...process.env, TMPDIR: tempDir("warren-chromium-") },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  return {
    context: (options = {}) => browser.newContext({ ...options }),
    close: async () => {
      await browser.close();
    },
  };
}

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

/** axe-core's serious and critical findings on the page (injected past the page's CSP). */
export async function seriousAccessibilityViolations(page: Page): Promise<string[]> {
  await page.evaluate(AXE_SOURCE);
  const violations = (await page.evaluate(
    "axe.run(document).then((r) => r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, targets: v.nodes.map((n) => n.target.join(' ')) })))",
  )) as { id: string; impact: string; help: string; targets: string[] }[];
  return violations.filter((v) => v.impact === "serious" || v.impact === "critical").map((v) => `${v.id}: ${v.help} (${v.targets.join(", ")})`);
}
