import type { IncomingMessage } from "node:http";
import type { TLSSocket } from "node:tls";

/** Where the install script downloads from, and the agent address its hint shows. */
export interface InstallAddresses {
  /** Origin of the public HTTP listener, e.g. https://ws.example.com. */
  readonly publicUrl: string;
  /** What the agent's WARREN_SERVER should be, e.g. https://ws.example.com. */
  readonly agentUrl: string;
}

/** A Host header we may write into a script: a DNS name or IP literal with an optional port. */
const SAFE_HOST = /^(?:[a-z0-9](?:[a-z0-9.-]{0,252})|\[[0-9a-f:.]+\])(?::\d{1,5})?$/i;

/**
 * What an agent's WARREN_SERVER is for a public URL: the URL itself, since the public listener
 * takes agents too; a *.localhost host becomes 127.0.0.1 (browsers and curl resolve it to
 * loopback, not every resolver node uses).
 */
export function agentUrlFor(publicUrl: string): string {
  const url = new URL(publicUrl);
  if (url.hostname === "localhost" || url.hostname.endsWith(".localhost")) url.hostname = "127.0.0.1";
  return url.origin;
}

/**
 * The addresses for one request. Configured URLs win (behind a load balancer or TLS proxy the
 * Host header is not what clients use). Otherwise the script downloads from the origin the
 * client reached us at, which worked for it, and agents connect to that same origin.
 */
export function installAddresses(options: {
  readonly req: IncomingMessage;
  readonly publicUrl: string | undefined;
  readonly publicAgentUrl: string | undefined;
  /** The server's own idea of its public origin (used when the Host header is unusable). */
  readonly defaultPublicUrl: string;
}): InstallAddresses {
  let publicUrl = options.publicUrl;
  if (!publicUrl) {
    const host = options.req.headers.host?.trim() ?? "";
    const scheme = (options.req.socket as TLSSocket).encrypted ? "https" : "http";
    publicUrl = SAFE_HOST.test(host) ? new URL(`${scheme}://${host}`).origin : options.defaultPublicUrl;
  }
  return { publicUrl, agentUrl: options.publicAgentUrl ?? agentUrlFor(publicUrl) };
}

/** A value as one single-quoted shell word. */
function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * The POSIX sh script served at /-/agent/install.sh: picks the binary for this machine by
 * `uname -m` (linux-x64 or linux-arm64), downloads it with curl or wget, checks it against the
 * published SHA-256, marks it executable and says how to run it.
 * Run as `curl -fsSL <server>/-/agent/install.sh | sh`; WARREN_INSTALL_DIR picks the directory.
 */
export function installScript(options: { readonly version: string; readonly addresses: InstallAddresses }): string {
  const { publicUrl, agentUrl } = options.addresses;
  return `#!/bin/sh
# Installs warren-agent ${options.version} (linux-x64 or linux-arm64, by uname -m) from ${publicUrl}.
#   curl -fsSL ${publicUrl}/-/agent/install.sh | sh
# WARREN_INSTALL_DIR: where to put it (default: the current directory).
set -eu

downloads=${shellQuote(`${publicUrl}/-/agent`)}
agent_server=${shellQuote(agentUrl)}
dir="\${WARREN_INSTALL_DIR:-.}"
target="$dir/warren-agent"

fail() { echo "warren-agent install: $*" >&2; exit 1; }

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64 | Linux/amd64) platform=linux-x64 ;;
  Linux/aarch64 | Linux/arm64) platform=linux-arm64 ;;
  *) fail "this server offers linux-x64 and linux-arm64 binaries; this machine is $(uname -s)/$(uname -m)" ;;
esac
url="$downloads/$platform"

if command -v curl >/dev/null 2>&1; then
  fetch() { curl -fsSL --compressed -o "$2" "$1"; }
elif command -v wget >/dev/null 2>&1; then
  fetch() { wget -q -O "$2" "$1"; }
else
  fail "needs curl or wget"
fi

if command -v sha256sum >/dev/null 2>&1; then
  sha256() { sha256sum "$1" | cut -d ' ' -f 1; }
elif command -v shasum >/dev/null 2>&1; then
  sha256() { shasum -a 256 "$1" | cut -d ' ' -f 1; }
elif command -v openssl >/dev/null 2>&1; then
  sha256() { openssl dgst -sha256 -r "$1" | cut -d ' ' -f 1; }
else
  fail "needs sha256sum, shasum or openssl to verify the download"
fi

mkdir -p "$dir"
tmp="$dir/.warren-agent.$$"
trap 'rm -f "$tmp" "$tmp.sha256"' EXIT
fetch "$url" "$tmp" || fail "download of $url failed"
fetch "$url.sha256" "$tmp.sha256" || fail "download of $url.sha256 failed"
expected="$(cut -d ' ' -f 1 < "$tmp.sha256")"
actual="$(sha256 "$tmp")"
[ -n "$expected" ] && [ "$expected" = "$actual" ] || fail "checksum mismatch: expected $expected, got $actual"
chmod 0755 "$tmp"
mv -f "$tmp" "$target"

cat <<EOF
warren-agent ${options.version} ($platform) installed at $target (sha256 $actual)
Run it with the workspace's agent token:
  WARREN_SERVER=$agent_server WARREN_TOKEN=<agent token> $target
or let it start and supervise your app, e.g.:
  WARREN_SERVER=$agent_server WARREN_TOKEN=<agent token> $target run -- code-server --bind-addr 127.0.0.1:8000
In a CI job, let it create the job's own workspace (ID token or enrollment token; see docs/ci.md):
  WARREN_SERVER=${publicUrl} $target ci --port 8000 -- code-server --bind-addr 127.0.0.1:8000 --auth none
EOF
`;
}
