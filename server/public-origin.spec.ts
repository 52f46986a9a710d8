import { describe, expect, it } from "vitest";
import { PublicOrigin } from "./public-origin.js";

describe("PublicOrigin", () => {
  it("is WARREN_PUBLIC_URL from the start, whatever port the listener binds", () => {
    const origin = new PublicOrigin({ publicUrl: "https://warren.example.com", rootDomain: "ws.example.com" });
    expect(origin.base).toBe("https://warren.example.com");
    expect(origin.listening(8443, true)).toBe("https://warren.example.com");
  });

  it("is the root domain on the bound port, without the scheme's default port, once the listener listens", () => {
    const origin = new PublicOrigin({ publicUrl: undefined, rootDomain: "localhost" });
    expect(origin.known).toBe(false);
    expect(() => origin.base).toThrow(/read before the HTTP listener listened/);
    expect(origin.listening(8080, false)).toBe("http://localhost:8080");
    expect(new PublicOrigin({ publicUrl: undefined, rootDomain: "ws.example.com" }).listening(443, true)).toBe("https://ws.example.com");
    expect(new PublicOrigin({ publicUrl: undefined, rootDomain: "ws.example.com" }).listening(80, false)).toBe("http://ws.example.com");
  });
});
