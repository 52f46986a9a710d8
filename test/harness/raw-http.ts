import net from "node:net";

/**
 * Sends raw bytes on a new connection and reads until the server closes it, or until `until`
 * says the text read so far is enough (then the client closes).
 */
export function exchange(port: number, bytes: string | Buffer, until?: (text: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    let text = "";
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      text += chunk;
      if (until?.(text)) socket.destroy();
    });
    socket.on("error", reject);
    socket.on("close", () => resolve(text));
    socket.write(bytes);
  });
}

/** Status codes of the responses in raw HTTP/1.1 text, in order. */
export function statuses(text: string): number[] {
  return [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
}
