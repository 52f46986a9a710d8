// The dashboard's script: renders the signed-in user's workspaces, tokens, SSH keys (and, for
// admins, users) from the same Connect API the CLI uses, called with the session cookie and
// the CSRF header. No framework: a few DOM helpers, polling once a second.

interface PageData {
  user: string;
  admin: boolean;
  publicUrl: string;
  agentUrl: string;
  sshHost: string;
  sshPort: number;
}

interface Workspace {
  name: string;
  ports?: { port: number; public?: boolean }[];
  urls?: string[];
  connected?: boolean;
  createTime?: string;
  expireTime?: string;
  desiredState?: string;
  actualState?: string;
  owner?: string;
  /** Set for a workspace a CI job enrolled for itself (`warren-agent ci`). */
  ci?: { issuer?: string; project?: string; job?: string; jobUrl?: string; holdExpireTime?: string; exitCode?: number };
}

interface AccessToken {
  id: string;
  user?: string;
  name?: string;
  createTime?: string;
  expireTime?: string;
  current?: boolean;
}

interface SshKey {
  fingerprint: string;
  title?: string;
  publicKey?: string;
  createTime?: string;
}

const data = JSON.parse(document.getElementById("warren-data")!.textContent!) as PageData;

class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

async function api<T>(method: string, body: object = {}): Promise<T> {
  const res = await fetch(`/warren.v1.${method}`, {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json", "x-warren-csrf": "1" },
    body: JSON.stringify(body),
  });
  const json = (await res.json().catch(() => ({}))) as { code?: string; message?: string };
  if (!res.ok) {
    if (res.status === 401) signedOut();
    throw new ApiError(json.code ?? "unknown", json.message ?? `HTTP ${res.status}`);
  }
  return json as T;
}

function signedOut(): void {
  location.assign(`/-/login?return_to=${encodeURIComponent(`${data.publicUrl}/`)}`);
}

type Child = Node | string | null | undefined | false;
function h(tag: string, attrs: Record<string, string | boolean | ((e: Event) => void)> = {}, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else if (v !== false) el.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

const $ = (id: string) => document.getElementById(id)!;

function say(message: string, error = false): void {
  const live = $("live");
  live.textContent = message;
  live.className = error ? "error" : "muted";
}

function stateName(value: string | undefined, prefix: string): string {
  const raw = (value ?? "").replace(prefix, "");
  return raw
    .toLowerCase()
    .split("_")
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join("");
}

function ago(iso: string | undefined): string {
  if (!iso) return "";
  return span((Date.now() - Date.parse(iso)) / 1000);
}

function span(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return "under a minute";
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

function copyButton(text: string, label: string): HTMLElement {
  return h(
    "button",
    {
      type: "button",
      "aria-label": label,
      onclick: () => {
        navigator.clipboard?.writeText(text).then(
          () => say("Copied."),
          () => say("Copy failed: select the text and copy it by hand.", true),
        );
      },
    },
    "Copy",
  );
}

function sshHost(): string {
  return data.sshHost === "localhost" || data.sshHost.endsWith(".localhost") ? "127.0.0.1" : data.sshHost;
}

// ---- workspaces ----

let lastWorkspaces = "";
let lastRenderMinute = 0;

async function refreshWorkspaces(force = false): Promise<void> {
  const res = await api<{ workspaces?: Workspace[] }>("WorkspaceService/ListWorkspaces");
  const json = JSON.stringify(res.workspaces ?? []);
  const minute = Math.floor(Date.now() / 60000);
  if (!force && json === lastWorkspaces && minute === lastRenderMinute) return;
  lastWorkspaces = json;
  lastRenderMinute = minute;
  renderWorkspaces(res.workspaces ?? []);
}

function renderWorkspaces(list: Workspace[]): void {
  const box = $("workspaces");
  const focused = document.activeElement?.id;
  box.replaceChildren();
  if (list.length === 0) box.append(h("p", { class: "muted" }, "No workspaces yet. Create one below."));
  for (const w of list.sort((a, b) => a.name.localeCompare(b.name))) box.append(workspaceCard(w));
  if (focused) document.getElementById(focused)?.focus();
}

function workspaceCard(w: Workspace): HTMLElement {
  const desired = stateName(w.desiredState, "WORKSPACE_DESIRED_STATE_");
  const actual = stateName(w.actualState, "WORKSPACE_ACTUAL_STATE_");
  const ttl = w.expireTime ? span((Date.parse(w.expireTime) - Date.now()) / 1000) : "none";
  const ssh = `ssh -p ${data.sshPort} ${w.name}@${sshHost()}`;
  const act = (label: string, method: string, confirmText?: string, cls = "") =>
    h(
      "button",
      {
        type: "button",
        id: `${method}-${w.name}`,
        class: cls,
        "aria-label": `${label} ${w.name}`,
        onclick: async () => {
          if (confirmText && !confirm(confirmText)) return;
          try {
            await api(`WorkspaceService/${method}`, { name: w.name });
            say(`${label}: ${w.name} done.`);
          } catch (err) {
            say(`${label} ${w.name}: ${(err as Error).message}`, true);
          }
          await refreshWorkspaces(true).catch(() => undefined);
        },
      },
      label,
    );
  const running = desired === "Running" || desired === "RestartRequested";
  const links = (w.ports ?? []).map((p, i) =>
    h("li", {}, h("a", { href: w.urls?.[i] ?? "#", target: "_blank", rel: "noopener" }, `port ${p.port}`), p.public ? " (public)" : " (private)"),
  );
  return h(
    "article",
    { class: "card", "data-workspace": w.name, "aria-labelledby": `ws-${w.name}` },
    h("h3", { id: `ws-${w.name}`, class: "row" }, w.name, h("span", { class: `state ${actual}`, "data-actual": actual }, actual), w.connected ? "" : h("span", { class: "muted" }, "(agent not connected)")),
    h(
      "div",
      { class: "grid" },
      h("div", {}, h("span", { class: "muted" }, "Desired: "), h("span", { "data-desired": desired }, desired)),
      h("div", {}, h("span", { class: "muted" }, "Agent: "), w.connected ? "connected" : "not connected"),
      h("div", {}, h("span", { class: "muted" }, "Age: "), ago(w.createTime)),
      h("div", {}, h("span", { class: "muted" }, "Time to live: "), ttl),
      data.admin && w.owner ? h("div", {}, h("span", { class: "muted" }, "Owner: "), w.owner) : null,
    ),
    w.ci ? ciJob(w) : null,
    links.length > 0 ? h("ul", { "aria-label": `ports of ${w.name}` }, ...links) : null,
    // SSH may be off on this server (WARREN_SSH_ADDR=off).
    data.sshPort > 0 ? h("div", { class: "row" }, h("code", {}, ssh), copyButton(ssh, `Copy the ssh command for ${w.name}`)) : null,
    h(
      "div",
      { class: "actions" },
      w.urls?.[0] ? h("a", { class: "button primary", href: w.urls[0], target: "_blank", rel: "noopener", "aria-label": `Open ${w.name}` }, "Open") : null,
      running ? act("Stop", "StopWorkspace") : act("Start", "StartWorkspace"),
      act("Restart", "RestartWorkspace"),
      act("Terminate", "TerminateWorkspace", `Terminate ${w.name}? Its agent is disconnected and its token revoked; this cannot be undone.`, "danger"),
      act("Delete", "DeleteWorkspace", `Delete ${w.name}? The workspace and its record are removed.`, "danger"),
    ),
  );
}

/** Where a CI workspace comes from (issuer, project, job) and, after its job failed, its hold. */
function ciJob(w: Workspace): HTMLElement {
  const ci = w.ci!;
  const job = ci.job ? (ci.jobUrl ? h("a", { href: ci.jobUrl, target: "_blank", rel: "noopener" }, `job ${ci.job}`) : `job ${ci.job}`) : "a job";
  const holding = ci.holdExpireTime && Date.parse(ci.holdExpireTime) > Date.now();
  return h(
    "div",
    { class: "ci", "data-ci": ci.issuer ?? "" },
    h("div", {}, h("span", { class: "muted" }, "CI: "), job, ci.project ? ` of ${ci.project}` : "", h("span", { class: "muted" }, ` (${ci.issuer ?? ""})`)),
    holding
      ? h(
          "p",
          { class: "hold", "data-hold": ci.holdExpireTime! },
          `Held for a look inside: the job's command failed (exit code ${ci.exitCode ?? 0}); the workspace ends in ${span((Date.parse(ci.holdExpireTime!) - Date.now()) / 1000)}, or when you terminate it.`,
        )
      : null,
  );
}

function parsePorts(text: string, isPublic: boolean): { port: number; public: boolean }[] {
  return text
    .split(/[\s,]+/)
    .filter(Boolean)
    .map((p) => ({ port: Number(p), public: isPublic }));
}

async function createWorkspace(e: Event): Promise<void> {
  e.preventDefault();
  const form = e.target as HTMLFormElement;
  const f = new FormData(form);
  const ports = [...parsePorts(String(f.get("private") ?? ""), false), ...parsePorts(String(f.get("public") ?? ""), true)];
  const ttlSeconds = Number(f.get("ttl") ?? 0);
  try {
    const res = await api<{ workspace: Workspace; agentToken: string }>("WorkspaceService/CreateWorkspace", {
      name: String(f.get("name") ?? "").trim(),
      ports,
      ...(ttlSeconds > 0 ? { ttlSeconds } : {}),
    });
    form.reset();
    const install = `curl -fsSL ${data.publicUrl}/-/agent/install.sh | sh`;
    const run = `WARREN_SERVER=${data.agentUrl} WARREN_TOKEN=${res.agentToken} ./warren-agent run -- <your command>`;
    const out = $("created");
    out.replaceChildren(
      h("h3", { tabindex: "-1", id: "created-title" }, `Workspace ${res.workspace.name} created`),
      h("p", {}, "Run these inside the workspace. The agent token is shown only this once."),
      h("pre", { id: "install-command" }, install),
      copyButton(install, "Copy the install command"),
      h("pre", { id: "agent-command" }, run),
      copyButton(run, "Copy the agent command"),
    );
    out.hidden = false;
    $("created-title").focus();
    await refreshWorkspaces(true);
  } catch (err) {
    say(`Create: ${(err as Error).message}`, true);
  }
}

// ---- tokens ----

async function refreshTokens(): Promise<void> {
  const body = $("tokens");
  // Signed in with the admin token ("admin" is no user's name): it has no access tokens of its own.
  if (data.user === "admin" && data.admin) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: "4", class: "muted" }, "The admin token has no access tokens of its own; users' tokens are made with UserService/CreateAccessToken.")));
    return;
  }
  const res = await api<{ tokens?: AccessToken[] }>("UserService/ListAccessTokens");
  body.replaceChildren(
    ...(res.tokens ?? []).map((t) =>
      h(
        "tr",
        { "data-token": t.id },
        h("td", {}, t.name || "(no name)", t.current ? h("span", { class: "muted" }, " (this session)") : ""),
        h("td", { class: "wide" }, h("code", {}, t.id)),
        h("td", {}, t.expireTime ? `in ${span((Date.parse(t.expireTime) - Date.now()) / 1000)}` : ""),
        h(
          "td",
          {},
          h(
            "button",
            {
              type: "button",
              class: "danger",
              "aria-label": `Revoke token ${t.name || t.id}`,
              onclick: async () => {
                if (!confirm(`Revoke ${t.name || t.id}? Everything that uses it (browser sessions included) is signed out.`)) return;
                try {
                  await api("UserService/RevokeAccessToken", { id: t.id });
                  say("Token revoked.");
                  await refreshTokens();
                } catch (err) {
                  say(`Revoke: ${(err as Error).message}`, true);
                }
              },
            },
            "Revoke",
          ),
        ),
      ),
    ),
  );
}

async function createToken(e: Event): Promise<void> {
  e.preventDefault();
  const form = e.target as HTMLFormElement;
  const f = new FormData(form);
  try {
    const res = await api<{ token: string }>("UserService/CreateAccessToken", { name: String(f.get("name") ?? ""), ttlSeconds: Number(f.get("ttl")) });
    form.reset();
    const out = $("token-created");
    out.replaceChildren(h("p", {}, "Your new token, shown only this once:"), h("pre", { id: "new-token" }, res.token), copyButton(res.token, "Copy the new token"));
    out.hidden = false;
    await refreshTokens();
  } catch (err) {
    say(`Token: ${(err as Error).message}`, true);
  }
}

// ---- SSH keys ----

async function refreshKeys(): Promise<void> {
  // The signed-in person's own keys; signed in with the admin token, that is the user "admin"
  // (whose keys log in as the admin), which the API wants named.
  const res = await api<{ keys?: SshKey[] }>("UserService/ListSshKeys", { user: data.user });
  $("keys").replaceChildren(
    ...(res.keys ?? []).map((k) =>
      h(
        "tr",
        {},
        h("td", {}, k.title || ""),
        h("td", {}, h("code", {}, k.fingerprint)),
        h(
          "td",
          {},
          h(
            "button",
            {
              type: "button",
              class: "danger",
              "aria-label": `Remove key ${k.title || k.fingerprint}`,
              onclick: async () => {
                if (!confirm(`Remove the key ${k.title || k.fingerprint}?`)) return;
                try {
                  await api("UserService/RemoveSshKey", { user: data.user, fingerprint: k.fingerprint });
                  await refreshKeys();
                } catch (err) {
                  say(`Remove key: ${(err as Error).message}`, true);
                }
              },
            },
            "Remove",
          ),
        ),
      ),
    ),
  );
}

async function addKey(e: Event): Promise<void> {
  e.preventDefault();
  const form = e.target as HTMLFormElement;
  const f = new FormData(form);
  try {
    await api("UserService/AddSshKey", { user: data.user, publicKey: String(f.get("key") ?? "").trim(), title: String(f.get("title") ?? "") });
    form.reset();
    say("Key added.");
    await refreshKeys();
  } catch (err) {
    say(`Add key: ${(err as Error).message}`, true);
  }
}

// ---- users (admins) ----

async function refreshUsers(): Promise<void> {
  const res = await api<{ users?: { name: string; createTime?: string }[] }>("UserService/ListUsers");
  $("users").replaceChildren(...(res.users ?? []).map((u) => h("tr", {}, h("td", {}, u.name), h("td", {}, `${ago(u.createTime)} ago`))));
}

async function createUser(e: Event): Promise<void> {
  e.preventDefault();
  const form = e.target as HTMLFormElement;
  try {
    await api("UserService/CreateUser", { name: String(new FormData(form).get("name") ?? "").trim() });
    form.reset();
    await refreshUsers();
  } catch (err) {
    say(`User: ${(err as Error).message}`, true);
  }
}

// ---- start ----

function start(): void {
  $("create-form").addEventListener("submit", createWorkspace);
  $("token-form").addEventListener("submit", createToken);
  $("key-form").addEventListener("submit", addKey);
  if (data.admin) $("user-form").addEventListener("submit", createUser);
  const fail = (err: unknown) => say((err as Error).message, true);
  refreshWorkspaces(true).catch(fail);
  refreshTokens().catch(fail);
  refreshKeys().catch(fail);
  if (data.admin) refreshUsers().catch(fail);
  // State changes show within a second; a failed poll says so and tries again.
  let polling = false;
  setInterval(() => {
    if (polling || document.hidden) return;
    polling = true;
    refreshWorkspaces()
      .catch(fail)
      .finally(() => (polling = false));
  }, 1000);
  // A stopped workspace's page sends its owner here to start it: ask once, then go back.
  const params = new URLSearchParams(location.search);
  const toStart = params.get("start");
  if (toStart) {
    const ask = $("start-ask");
    ask.replaceChildren(
      h("p", {}, `Start workspace ${toStart}?`),
      h(
        "button",
        {
          type: "button",
          class: "primary",
          id: "start-confirm",
          onclick: async () => {
            try {
              await api("WorkspaceService/StartWorkspace", { name: toStart });
              say(`${toStart} is starting.`);
              ask.hidden = true;
              await refreshWorkspaces(true);
            } catch (err) {
              fail(err);
            }
          },
        },
        `Start ${toStart}`,
      ),
    );
    ask.hidden = false;
  }
}

start();
