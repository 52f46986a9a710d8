import { describe, expect, it } from "vitest";
import { parseHost, workspaceUrl } from "./workspace-host.js";

describe("workspace host names", () => {
  const root = "warren.localhost";
  it("parses {port}-{workspace}.{root}, with or without the listener port", () => {
    expect(parseHost("8000-demo.warren.localhost:8080", root)).toEqual({ kind: "workspace", workspace: "demo", port: 8000 });
    expect(parseHost("3000-alice-api.warren.localhost", root)).toEqual({ kind: "workspace", workspace: "alice-api", port: 3000 });
    expect(parseHost("8000-DEMO.Warren.Localhost.", root)).toEqual({ kind: "workspace", workspace: "demo", port: 8000 });
  });

  it("treats the root domain and IP literals as the root", () => {
    expect(parseHost("warren.localhost:8080", root).kind).toBe("root");
    expect(parseHost("127.0.0.1:8080", root).kind).toBe("root");
    expect(parseHost("[::1]:8080", root).kind).toBe("root");
  });

  it("rejects malformed hosts", () => {
    for (const host of [undefined, "", "demo.warren.localhost", "8000demo.warren.localhost", "0-demo.warren.localhost", "080-demo.warren.localhost",
      "65536-demo.warren.localhost", "8000-.warren.localhost", "8000-demo-.warren.localhost", "8000-de_mo.warren.localhost",
      "8000-a.b.warren.localhost", "8000-demo.evil.com", "8000-demo.warren.localhost.evil.com", `8000-${"a".repeat(64)}.warren.localhost`]) {
      expect(parseHost(host, root).kind, String(host)).toBe("invalid");
    }
  });

  it("builds URLs from the public base", () => {
    expect(workspaceUrl("http://warren.localhost:8080", root, "demo", 8000)).toBe("http://8000-demo.warren.localhost:8080/");
    expect(workspaceUrl("https://ws.example.com", "ws.example.com", "demo", 3000)).toBe("https://3000-demo.ws.example.com/");
  });
});
