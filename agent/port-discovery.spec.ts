import { describe, expect, it } from "vitest";
import { listListeningPorts, parseProcNetTcp, type ProcFiles } from "./port-discovery.js";

const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0000000000000000 100 0 0 10 0
   1: 00000000:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 222 1 0000000000000000 100 0 0 10 0
   2: 0A00000A:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 333 1 0000000000000000 100 0 0 10 0
   3: 0100007F:1F40 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 444 1 0000000000000000 100 0 0 10 0
`;
const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1538 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 555 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 666 1 0000000000000000 100 0 0 10 0
`;

describe("listening-port discovery", () => {
  it("keeps LISTEN sockets on loopback and on every address, and skips other interfaces and connections", () => {
    expect(parseProcNetTcp(TCP, false)).toEqual([
      { port: 8000, address: "127.0.0.1", inode: "111" },
      { port: 6379, address: "0.0.0.0", inode: "222" },
    ]);
    expect(parseProcNetTcp(TCP6, true)).toEqual([
      { port: 5432, address: "::", inode: "555" },
      { port: 3000, address: "::1", inode: "666" },
    ]);
  });

  it("names the process that owns each socket where /proc lets it, and nothing where it does not", async () => {
    const files: Record<string, string> = { "/p/net/tcp": TCP, "/p/net/tcp6": TCP6, "/p/10/comm": "redis-server\n" };
    const proc: ProcFiles = {
      readFile: async (path) => {
        if (path in files) return files[path]!;
        throw new Error("ENOENT");
      },
      readdir: async (path) => {
        if (path === "/p") return ["10", "11", "self", "net"];
        if (path === "/p/10/fd") return ["0", "7"];
        throw new Error("EACCES");
      },
      readlink: async (path) => (path === "/p/10/fd/7" ? "socket:[222]" : "/dev/null"),
    };
    expect(await listListeningPorts(proc, "/p")).toEqual([
      { port: 3000, address: "::1" },
      { port: 5432, address: "::" },
      { port: 6379, address: "0.0.0.0", process: "redis-server" },
      { port: 8000, address: "127.0.0.1" },
    ]);
  });
});
