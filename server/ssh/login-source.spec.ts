import { describe, expect, it } from "vitest";
import { loginSourceOf } from "./login-source.js";

describe("loginSourceOf", () => {
  it("keys IPv4 by address, IPv4-mapped IPv6 as its IPv4, IPv6 by its /64", () => {
    expect(loginSourceOf("192.0.2.7")).toBe("addr:192.0.2.7");
    expect(loginSourceOf("::ffff:192.0.2.7")).toBe("addr:192.0.2.7");
    expect(loginSourceOf("2001:db8:1:2:aaaa::1")).toBe("addr:2001:db8:1:2::/64");
    expect(loginSourceOf("2001:0db8:0001:0002:ffff:ffff:ffff:ffff")).toBe("addr:2001:db8:1:2::/64");
    expect(loginSourceOf("2001:db8::1")).toBe("addr:2001:db8:0:0::/64");
    expect(loginSourceOf("::1")).toBe("addr:0:0:0:0::/64");
    expect(loginSourceOf("fe80::1%eth0")).toBe("addr:fe80:0:0:0::/64");
  });
});
