import { createInterface } from "node:readline";

/**
 * Reads one line from stdin. On a terminal the prompt goes to stderr and what is typed is not
 * echoed (a token must not stay on the screen); from a pipe, the first line is taken as is.
 */
export async function readSecret(prompt: string, signal?: AbortSignal): Promise<string | undefined> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    const rl = createInterface({ input: stdin, terminal: false });
    for await (const line of rl) {
      rl.close();
      return line.trim() || undefined;
    }
    return undefined;
  }
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.resume();
  stdin.setEncoding("utf8");
  return new Promise((resolve, reject) => {
    let text = "";
    const done = (value: string | undefined, err?: Error) => {
      signal?.removeEventListener("abort", onAbort);
      stdin.off("data", onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write("\n");
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === "\r" || ch === "\n" || ch === "\u0004") return done(text.trim() || undefined);
        if (ch === "\u0003") return done(undefined, new Error("interrupted"));
        if (ch === "\u007f" || ch === "\b") text = text.slice(0, -1);
        else if (ch >= " ") text += ch;
      }
    };
    // Another way of logging in won (the browser): the terminal is put back as it was.
    const onAbort = () => done(undefined);
    signal?.addEventListener("abort", onAbort);
    stdin.on("data", onData);
  });
}
