import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import { errorAnswer } from "./error-response.js";

const html = { accept: "text/html,application/xhtml+xml", host: "8000-demo.warren.localhost:8080", method: "GET" };

describe("error answers", () => {
  it("stay one text line for curl, with the same status as the page", () => {
    const err = new WarrenError(ErrorCode.NotFound, 'workspace "demo" not found');
    const text = errorAnswer(err, { accept: "*/*", host: html.host });
    expect(text.status).toBe(404);
    expect(text.body).toBe('workspace "demo" not found\n');
    const page = errorAnswer(err, html);
    expect(page.status).toBe(404);
    expect(page.headers["content-type"]).toMatch(/^text\/html/);
    expect(page.body).toContain("workspace &quot;demo&quot; not found");
  });

  it("allow only their own inline script and style by hash", () => {
    const page = errorAnswer(new WarrenError(ErrorCode.BadGateway, 'nothing is listening on port 8000 in workspace "demo"'), html);
    const script = /<script>([\s\S]*?)<\/script>/.exec(page.body)![1]!;
    const style = /<style>([\s\S]*?)<\/style>/.exec(page.body)![1]!;
    const csp = page.headers["content-security-policy"]!;
    expect(csp).toContain(`script-src 'sha256-${createHash("sha256").update(script).digest("base64")}'`);
    expect(csp).toContain(`style-src 'sha256-${createHash("sha256").update(style).digest("base64")}'`);
    expect(csp).toMatch(/default-src 'none'/);
  });

  it("escape what they repeat from the request", () => {
    const page = errorAnswer(new WarrenError(ErrorCode.NotFound, "no <script>alert(1)</script>"), { ...html, host: '8000-x".warren.localhost' });
    expect(page.body).not.toContain("<script>alert(1)");
    expect(page.body).toContain("&lt;script&gt;");
  });

  it("retry by themselves only for GET (a page answering a POST does not post again)", () => {
    const err = new WarrenError(ErrorCode.BadGateway, 'nothing is listening on port 8000 in workspace "demo"');
    expect(errorAnswer(err, html).body).toContain("<script>");
    expect(errorAnswer(err, { ...html, method: "POST" }).body).not.toContain("<script>");
  });
});
