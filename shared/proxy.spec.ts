import { describe, expect, it } from "vitest";
import { bypassed, describeProxy, proxyFor } from "./proxy.js";

describe("proxyFor", () => {
  const https = new URL("https://ws.example.com:8150");
  const http = new URL("http://10.0.0.5:8080");

  it("takes HTTPS_PROXY for https and HTTP_PROXY for http, lower case first, bare host:port as http://", () => {
    expect(proxyFor(https, { HTTPS_PROXY: "http://p:3128" })?.href).toBe("http://p:3128/");
    expect(proxyFor(https, { HTTP_PROXY: "http://p:3128" })).toBeUndefined();
    expect(proxyFor(http, { HTTP_PROXY: "p:3128" })?.href).toBe("http://p:3128/");
    expect(proxyFor(https, { https_proxy: "http://lower:1", HTTPS_PROXY: "http://upper:2" })?.host).toBe("lower:1");
    expect(proxyFor(https, {})).toBeUndefined();
  });

  it("keeps credentials for CONNECT but never shows them", () => {
    const proxy = proxyFor(https, { HTTPS_PROXY: "http://user:p%40ss@p:3128" })!;
    expect(proxy.username).toBe("user");
    expect(describeProxy(proxy)).toBe("http://p:3128");
  });

  it("refuses proxies it cannot speak to, naming the variable", () => {
    expect(() => proxyFor(https, { HTTPS_PROXY: "socks5://p:1080" })).toThrow("the proxy socks5://p:1080 (HTTPS_PROXY) is not supported: only http:// proxies (HTTP CONNECT) are");
    expect(() => proxyFor(https, { HTTPS_PROXY: "http://[bad" })).toThrow(/is not a URL/);
  });
});

describe("bypassed (NO_PROXY)", () => {
  const url = (s: string) => new URL(s);
  it("matches *, hosts, domains with their subdomains, ports and IP literals", () => {
    expect(bypassed(url("https://a.example.com"), "*")).toBe(true);
    expect(bypassed(url("https://a.example.com"), "example.com")).toBe(true);
    expect(bypassed(url("https://a.example.com"), ".example.com")).toBe(true);
    expect(bypassed(url("https://a.example.com"), "*.example.com")).toBe(true);
    expect(bypassed(url("https://badexample.com"), "example.com")).toBe(false);
    expect(bypassed(url("https://a.example.com:8150"), "example.com:443")).toBe(false);
    expect(bypassed(url("https://a.example.com"), "example.com:443")).toBe(true);
    expect(bypassed(url("http://127.0.0.1:8150"), "localhost, 127.0.0.1")).toBe(true);
    expect(bypassed(url("http://[::1]:8150"), "::1")).toBe(true);
    expect(bypassed(url("http://10.1.2.3"), "")).toBe(false);
  });
});
