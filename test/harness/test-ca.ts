import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./temp-dirs.js";

export interface TestCa {
  readonly dir: string;
  readonly caFile: string;
  readonly ca: Buffer;
  /** Issues a certificate for the names (DNS names and IPs); returns its file paths. */
  issue(name: string, altNames: string[]): { certFile: string; keyFile: string };
}

/** A throwaway certificate authority made with the openssl command. */
export function createTestCa(): TestCa {
  const dir = tempDir("warren-ca-");
  const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Warren Test CA");
  let serial = 1;
  return {
    dir,
    caFile: join(dir, "ca.pem"),
    ca: readFileSync(join(dir, "ca.pem")),
    issue(name, altNames) {
      const base = `${name}-${serial}`;
      const san = altNames.map((n) => (/^[\d.]+$/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(",");
      writeFileSync(join(dir, `${base}.ext`), `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`);
      openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", `${base}.key`, "-out", `${base}.csr`, "-subj", `/CN=${name}`);
      openssl("x509", "-req", "-in", `${base}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", String(serial++), "-days", "2", "-out", `${base}.pem`, "-extfile", `${base}.ext`);
      return { certFile: join(dir, `${base}.pem`), keyFile: join(dir, `${base}.key`) };
    },
  };
}
