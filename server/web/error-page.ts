import { STATUS_CODES } from "node:http";
import { ErrorCode, type WarrenError } from "../../shared/errors.js";
import { escapeHtml, renderPage } from "./page.js";

/** What an error answer knows of the request it answers. */
export interface ErrorRequest {
  readonly accept?: string | undefined;
  readonly host?: string | undefined;
  readonly method?: string | undefined;
}

/** Whether the client is a browser that asked for a page (curl and scripts keep the text). */
export function wantsHtml(request: ErrorRequest | undefined): boolean {
  return request !== undefined && /\btext\/html\b/i.test(request.accept ?? "");
}

/**
 * The page a person sees for an error on a workspace host (or the root domain): what
 * happened and what to do, in the dashboard's look. "Nothing is listening yet" and "agent
 * not connected" reload by themselves, so the page turns into the app once it is up.
 */
export function errorPage(error: WarrenError, status: number, request: ErrorRequest): { html: string; headers: Record<string, string> } {
  const host = (request.host ?? "").toLowerCase();
  // The root domain is the workspace host without its first label; a scheme-relative link
  // keeps the page's own scheme.
  const target = /^(\d{1,5})-([a-z0-9-]+)\.(.+)$/.exec(host);
  const root = target ? `//${target[3]}` : "";
  const workspace = target?.[2];
  const message = `<p class="muted">${escapeHtml(error.message)}</p>`;
  const dashboard = root ? `<p><a class="button" href="${escapeHtml(root)}/">Your workspaces</a></p>` : "";
  let title = STATUS_CODES[status] ?? "Error";
  let body = message + dashboard;
  let refreshSeconds: number | undefined;
  const listening = /nothing is listening on port (\d+)/.exec(error.message);
  if (error.code === ErrorCode.BadGateway && listening) {
    title = `Nothing is listening on port ${listening[1]} yet`;
    refreshSeconds = 3;
    body = `<p>The workspace is connected, but no app answers on port ${escapeHtml(listening[1]!)} inside it. Start it there, listening on <code>127.0.0.1:${escapeHtml(listening[1]!)}</code>.</p>
<p role="status">This page tries again every few seconds and shows the app as soon as it is up.</p>${message}${dashboard}`;
  } else if (error.code === ErrorCode.BadGateway) {
    title = "The app could not be reached";
  } else if (error.code === ErrorCode.Unavailable && /is stopped/.test(error.message) && workspace) {
    title = `Workspace ${workspace} is stopped`;
    body = `<p>The workspace is stopped, so it takes no traffic.</p>
<p><a class="button primary" href="${escapeHtml(root)}/?start=${encodeURIComponent(workspace)}">Start ${escapeHtml(workspace)}</a> <span class="muted">(its owner)</span></p>${message}`;
  } else if (error.code === ErrorCode.Unavailable && /not connected/.test(error.message) && workspace) {
    title = `Workspace ${workspace} is not connected`;
    refreshSeconds = 5;
    body = `<p>No Warren agent of this workspace is connected. Start the agent inside the workspace with its agent token (shown when the workspace was created; <code>warren workspace rotate-token ${escapeHtml(workspace)}</code> makes a new one):</p>
<pre>curl -fsSL ${escapeHtml(root ? `http:${root}` : "")}/-/agent/install.sh | sh
WARREN_TOKEN=&lt;agent token&gt; ./warren-agent run -- &lt;your app&gt;</pre>
<p role="status">This page tries again every few seconds.</p>${message}${dashboard}`;
  } else if (error.code === ErrorCode.Unavailable) {
    title = "Temporarily unavailable";
    refreshSeconds = 5;
  } else if (error.code === ErrorCode.DeadlineExceeded) {
    title = "The app did not answer in time";
    body = `<p>The request reached the workspace, but the app took too long to answer. Try again; if it keeps happening, look at the app.</p>${message}${dashboard}`;
  } else if (error.code === ErrorCode.NotFound) {
    title = "Not found";
    body = `<p>There is no such workspace or page, or it is not yours.</p>${message}${dashboard}`;
  } else if (error.code === ErrorCode.PermissionDenied) {
    title = "Not allowed";
  }
  return renderPage({
    title,
    narrow: true,
    homeUrl: root ? `${root}/` : "/",
    main: `<p class="status" aria-hidden="true">${status}</p><h1>${escapeHtml(title)}</h1>\n${body}`,
    ...(refreshSeconds !== undefined && (request.method === "GET" || request.method === undefined) ? { script: retryScript(status, refreshSeconds) } : {}),
  });
}

/**
 * Asks for the same URL every few seconds and shows the answer once it is no longer this
 * error (a meta refresh would reload the whole page each time, and axe flags it).
 */
function retryScript(status: number, seconds: number): string {
  return `(function(){function poll(){fetch(location.href,{cache:"no-store",credentials:"same-origin"}).then(function(r){if(r.status!==${status})location.reload();else setTimeout(poll,${seconds * 1000})},function(){setTimeout(poll,${seconds * 1000})})}setTimeout(poll,${seconds * 1000})})();`;
}
