import type { IncomingMessage, ServerResponse } from "node:http";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import { isAdmin, type Principal } from "../domain/principal.js";
import { escapeHtml, sendPage } from "./page.js";

declare const __WARREN_DASHBOARD_JS__: string | undefined;

/** The dashboard's script, bundled by scripts/build.mjs from web/dashboard.ts. */
const DASHBOARD_JS: string = typeof __WARREN_DASHBOARD_JS__ === "string" ? __WARREN_DASHBOARD_JS__ : "";

export interface DashboardOptions {
  readonly publicBase: () => string;
  /** The principal of the root domain's session cookie, or undefined. */
  readonly principalOf: (req: IncomingMessage) => Promise<Principal | undefined>;
  /** Addresses people and agents use (as install.sh shows them). */
  readonly addressesFor: (req: IncomingMessage) => { publicUrl: string; agentUrl: string };
  /** The SSH listener's port as people reach it; undefined when SSH is off. */
  readonly sshPort: () => number | undefined;
}

const TTL_CHOICES: [string, number][] = [
  ["no limit", 0],
  ["1 hour", 3600],
  ["8 hours", 8 * 3600],
  ["1 day", 86400],
  ["7 days", 7 * 86400],
];

/**
 * The dashboard on the root domain (GET / from a browser). The page is rendered here; its
 * script reads and changes everything through the Connect API with the session cookie. A
 * browser without a session goes to the login page; curl keeps the one-line text answer.
 */
export class Dashboard {
  readonly #options: DashboardOptions;

  constructor(options: DashboardOptions) {
    this.#options = options;
  }

  route(req: IncomingMessage, res: ServerResponse, path: string): boolean {
    if (path !== "/" || (req.method !== "GET" && req.method !== "HEAD")) return false;
    if (!/\btext\/html\b/i.test(req.headers.accept ?? "")) return false;
    this.#serve(req, res).catch((err) => {
      const e = WarrenError.from(err);
      sendPage(res, 500, { title: "Warren", narrow: true, main: `<h1>Something went wrong</h1><p class="error">${escapeHtml(e.message)}</p>` });
    });
    return true;
  }

  async #serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const base = new URL(this.#options.publicBase()).origin;
    const principal = await this.#options.principalOf(req);
    if (!principal) {
      res.writeHead(302, { location: `${base}/-/login?return_to=${encodeURIComponent(`${base}/`)}`, "cache-control": "no-store" });
      res.end();
      return;
    }
    if (DASHBOARD_JS === "") throw new WarrenError(ErrorCode.Internal, "the dashboard script is missing from this build");
    const user = principal.kind === "user" ? principal.user : "admin";
    const admin = isAdmin(principal);
    const { publicUrl, agentUrl } = this.#options.addressesFor(req);
    const sshPort = this.#options.sshPort();
    sendPage(res, 200, {
      title: "Warren: workspaces",
      headerRight: `<span>${escapeHtml(user)}${admin ? ' <span class="state">admin</span>' : ""}</span><a class="button" href="/-/logout">Sign out</a>`,
      data: { user, admin, publicUrl, agentUrl, sshHost: new URL(publicUrl).hostname, sshPort: sshPort ?? 0 },
      script: DASHBOARD_JS,
      main: `<h1>Workspaces</h1>
<p id="live" role="status" aria-live="polite" class="muted"></p>
<div id="start-ask" class="card" hidden></div>
<section id="workspaces" aria-label="Your workspaces"><p class="muted">Loading…</p></section>
<h2 id="create-title">Create a workspace</h2>
<form id="create-form" class="card" aria-labelledby="create-title">
  <div class="grid">
    <div><label for="ws-name">Name</label><input id="ws-name" name="name" required pattern="[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?" autocomplete="off" aria-describedby="ws-name-help"><span id="ws-name-help" class="muted">lowercase letters, digits, hyphens</span></div>
    <div><label for="ws-private">Private ports</label><input id="ws-private" name="private" inputmode="numeric" placeholder="8000" aria-describedby="ws-private-help"><span id="ws-private-help" class="muted">only you reach them</span></div>
    <div><label for="ws-public">Public ports</label><input id="ws-public" name="public" inputmode="numeric" placeholder="3000" aria-describedby="ws-public-help"><span id="ws-public-help" class="muted">anyone with the URL</span></div>
    <div><label for="ws-ttl">Time to live</label><select id="ws-ttl" name="ttl">${TTL_CHOICES.map(([label, s]) => `<option value="${s}">${label}</option>`).join("")}</select></div>
  </div>
  <div class="actions"><button type="submit" class="primary">Create workspace</button></div>
</form>
<div id="created" class="card" hidden></div>
<h2 id="tokens-title">Access tokens</h2>
<div class="card">
  <p class="muted">For the <code>warren</code> CLI, the API and SSH passwords. Revoking one signs out everything that uses it.</p>
  <table aria-labelledby="tokens-title"><thead><tr><th scope="col">Name</th><th scope="col" class="wide">Id</th><th scope="col">Expires</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead><tbody id="tokens"></tbody></table>
  <form id="token-form" class="row bottom" aria-label="Create an access token">
    <div><label for="token-name">Name</label><input id="token-name" name="name" required maxlength="100" placeholder="laptop"></div>
    <div><label for="token-ttl">Lifetime</label><select id="token-ttl" name="ttl"><option value="86400">1 day</option><option value="604800">7 days</option><option value="2592000" selected>30 days</option><option value="31536000">1 year</option></select></div>
    <div><button type="submit" class="primary">Create token</button></div>
  </form>
  <div id="token-created" hidden></div>
</div>
<h2 id="keys-title">SSH keys</h2>
<div class="card">
  <table aria-labelledby="keys-title"><thead><tr><th scope="col">Title</th><th scope="col">Fingerprint</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead><tbody id="keys"></tbody></table>
  <form id="key-form" aria-label="Add an SSH key">
    <label for="key-text">Public key</label><textarea id="key-text" name="key" rows="2" required placeholder="ssh-ed25519 AAAA… you@laptop"></textarea>
    <label for="key-title">Title</label><input id="key-title" name="title" placeholder="laptop">
    <div class="actions"><button type="submit" class="primary">Add key</button></div>
  </form>
</div>
${
  admin
    ? `<h2 id="users-title">Users</h2>
<div class="card">
  <table aria-labelledby="users-title"><thead><tr><th scope="col">Name</th><th scope="col">Created</th></tr></thead><tbody id="users"></tbody></table>
  <form id="user-form" class="row bottom" aria-label="Create a user">
    <div><label for="user-name">Name</label><input id="user-name" name="name" required></div>
    <div><button type="submit" class="primary">Create user</button></div>
  </form>
</div>`
    : ""
}`,
    });
  }
}
