import { spawn } from "node:child_process";

/**
 * Opens a URL in the user's browser: $BROWSER when set, else xdg-open (Linux) or open (macOS).
 * Resolves false when nothing could be started (the caller prints the URL to open by hand).
 */
export function openBrowser(url: string, env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  const command = env["BROWSER"] || (process.platform === "darwin" ? "open" : process.platform === "win32" ? "explorer" : "xdg-open");
  return new Promise((resolve) => {
    try {
      const child = spawn(command, [url], { stdio: "ignore", detached: true });
      child.once("error", () => resolve(false));
      child.once("spawn", () => {
        child.unref();
        resolve(true);
      });
    } catch {
      resolve(false);
    }
  });
}
