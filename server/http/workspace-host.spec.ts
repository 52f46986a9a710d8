import { describe, expect, it } from "vitest";
import { parseHost, workspaceUrl } from "./workspace-host.js";
import { isValidNewWorkspaceName, isValidWorkspaceName } from "../domain/workspace-name.js";

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

  it("does not take a Host of only hex digits (cafe) for an IP literal that reaches the root domain", () => {
    for (const host of ["cafe", "cafe:8080", "beef", "abc:def", "a"]) expect(parseHost(host, root).kind, host).toBe("invalid");
    expect(parseHost("::1", root).kind).toBe("invalid");
    expect(parseHost("[2001:db8::1]:443", root).kind).toBe("root");
  });

  it("keeps new workspace names of 58-63 characters out, so {port}-{name} fits a 63-octet DNS label (existing ones still parse)", () => {
    const longest = "a".repeat(57);
    expect(isValidNewWorkspaceName(longest)).toBe(true);
    expect(`65535-${longest}`.length).toBeLessThanOrEqual(63);
    for (const n of [58, 63]) {
      expect(isValidNewWorkspaceName("a".repeat(n))).toBe(false);
      expect(isValidWorkspaceName("a".repeat(n))).toBe(true);
      expect(parseHost(`80-${"a".repeat(n)}.warren.localhost`, root).kind).toBe("workspace");
    }
  });

  it("builds URLs from the public base", () => {
    expect(workspaceUrl("http://warren.localhost:8080", root, "demo", 8000)).toBe("http://8000-demo.warren.localhost:8080/");
    expect(workspaceUrl("https://ws.example.com", "ws.example.com", "demo", 3000)).toBe("https://3000-demo.ws.example.com/");
  });
});
