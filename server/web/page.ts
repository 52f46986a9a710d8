import { createHash } from "node:crypto";
import type { ServerResponse } from "node:http";

/**
 * The one look of Warren's pages (dashboard, login, sign-in failures, error pages on
 * workspace hosts): inline CSS and script allowed by their hashes in a strict CSP, so a page
 * is one response, loads nothing from elsewhere, and works on any host Warren answers.
 */
export const PAGE_CSS = `
:root{color-scheme:light dark;--bg:#f6f7f9;--fg:#1b1f24;--muted:#57606a;--card:#fff;--line:#d0d7de;--accent:#0b5cad;--accent-fg:#fff;--danger:#b3261e;--ok:#1a7f37;--warn:#9a6700}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9da7b3;--card:#161b22;--line:#30363d;--accent:#4493f8;--accent-fg:#0d1117;--danger:#f85149;--ok:#3fb950;--warn:#d29922}}
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;justify-content:space-between;padding:.75rem 1rem;border-bottom:1px solid var(--line);background:var(--card)}
header .brand{font-weight:700;font-size:1.1rem;color:var(--fg);text-decoration:none}
main{max-width:72rem;margin:0 auto;padding:1rem}
main.narrow{max-width:34rem;margin-top:2rem}
h1{font-size:1.5rem;margin:.5rem 0 1rem}h2{font-size:1.2rem;margin:1.5rem 0 .5rem}
a{color:var(--accent)}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:1rem;margin:0 0 1rem}
.muted{color:var(--muted)}.error{color:var(--danger)}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em}
pre{white-space:pre-wrap;word-break:break-all;background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:.5rem;margin:.25rem 0}
button,.button{display:inline-block;font:inherit;font-size:.95rem;padding:.4rem .8rem;border-radius:6px;border:1px solid var(--line);background:var(--card);color:var(--fg);cursor:pointer;text-decoration:none;min-height:2.25rem}
button.primary,.button.primary{background:var(--accent);color:var(--accent-fg);border-color:var(--accent)}
button.danger{color:var(--danger);border-color:var(--danger)}
button:focus-visible,.button:focus-visible,a:focus-visible,input:focus-visible,select:focus-visible,textarea:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
button[disabled]{opacity:.6;cursor:default}
label{display:block;margin:.5rem 0 .25rem;font-weight:600}
input,select,textarea{font:inherit;width:100%;padding:.4rem .5rem;border:1px solid var(--line);border-radius:6px;background:var(--card);color:var(--fg)}
input[type=checkbox]{width:auto}
.row{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center}.row.bottom{align-items:flex-end}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(12rem,1fr));gap:.5rem 1rem}
.actions{display:flex;flex-wrap:wrap;gap:.4rem;margin-top:.5rem}
.state{display:inline-block;padding:0 .5rem;border-radius:999px;border:1px solid var(--line);font-size:.85rem}
.state.Running{color:var(--ok);border-color:var(--ok)}.state.Stopped,.state.Stopping{color:var(--warn);border-color:var(--warn)}.state.Failed,.state.Error{color:var(--danger);border-color:var(--danger)}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.4rem;border-bottom:1px solid var(--line);vertical-align:top}
.sr-only{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.status{font-size:3rem;font-weight:700;margin:0;color:var(--muted)}
@media (max-width:40rem){main{padding:.5rem}th.wide,td.wide{display:none}}
`;

function cspHash(text: string): string {
  return `'sha256-${createHash("sha256").update(text).digest("base64")}'`;
}

const CSS_HASH = cspHash(PAGE_CSS);

export interface PageOptions {
  readonly title: string;
  /** The page's main content (HTML, already escaped). */
  readonly main: string;
  /** Header content on the right (user name, sign-out), HTML. */
  readonly headerRight?: string;
  /** Link of the brand in the header (the dashboard). */
  readonly homeUrl?: string;
  /** A script run by the page (allowed by its hash only). */
  readonly script?: string;
  readonly narrow?: boolean;
  /** False: no form-action in the CSP (the login form's answer redirects to a workspace host). */
  readonly formAction?: false;
  /** JSON handed to the script in a data element (not executed). */
  readonly data?: unknown;
}

/** Renders a complete HTML page and the headers that go with it (CSP with the inline hashes). */
export function renderPage(options: PageOptions): { html: string; headers: Record<string, string> } {
  const script = options.script !== undefined ? `<script>${options.script}</script>` : "";
  const data = options.data !== undefined ? `<script type="application/json" id="warren-data">${jsonForHtml(options.data)}</script>` : "";
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(options.title)}</title>
<style>${PAGE_CSS}</style>
</head><body>
<header><a class="brand" href="${escapeHtml(options.homeUrl ?? "/")}">Warren</a>${options.headerRight ? `<div class="row">${options.headerRight}</div>` : ""}</header>
<main${options.narrow ? ' class="narrow"' : ""}>
${options.main}
</main>${data}${script}
</body></html>
`;
  const scriptSrc = options.script !== undefined ? cspHash(options.script) : "'none'";
  return {
    html,
    headers: {
      "content-type": "text/html; charset=utf-8",
      "content-length": String(Buffer.byteLength(html)),
      "cache-control": "no-store",
      "content-security-policy": `default-src 'none'; style-src ${CSS_HASH}; script-src ${scriptSrc}; connect-src 'self'; img-src 'self' data:;${options.formAction === false ? "" : " form-action 'self';"} frame-ancestors 'none'; base-uri 'none'`,
      "x-frame-options": "DENY",
      "x-content-type-options": "nosniff",
      // same-origin, not no-referrer: under no-referrer Chromium posts forms with `Origin: null`,
      // which the login form refuses as cross-site. Other origins still get no referrer.
      "referrer-policy": "same-origin",
    },
  };
}

/** Answers with a page (HEAD gets the headers only). */
export function sendPage(res: ServerResponse, status: number, options: PageOptions, extraHeaders: Record<string, string | string[]> = {}): void {
  const { html, headers } = renderPage(options);
  res.writeHead(status, { ...headers, ...extraHeaders });
  res.end(res.req?.method === "HEAD" ? undefined : html);
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/** JSON safe inside a <script type="application/json"> element. */
function jsonForHtml(value: unknown): string {
  return JSON.stringify(value).replace(/</g, "\\u003c").replace(/>/g, "\\u003e").replace(/&/g, "\\u0026");
}
