import { describe, expect, it } from "vitest";
import { parseCommandLine, parseDuration, parseHostPort, resolveSettings, setting } from "./settings.js";

const specs = {
  addr: setting({ key: "addr", flag: "addr", env: "WARREN_ADDR", description: "", default: parseHostPort("127.0.0.1:1"), parse: parseHostPort }),
  wait: setting({ key: "wait", flag: "wait", env: "WARREN_WAIT", description: "", default: 1000, parse: parseDuration }),
};

describe("settings", () => {
  it("resolves flag > env > file > default", () => {
    const file = new Map([["addr", "127.0.0.1:3"], ["wait", "3s"]]);
    const env = { WARREN_ADDR: "127.0.0.1:2" };
    const flags = parseCommandLine(["--addr=127.0.0.1:4"], specs).values;
    expect(resolveSettings(specs, { flags, env, file }).addr.port).toBe(4);
    expect(resolveSettings(specs, { flags: new Map(), env, file }).addr.port).toBe(2);
    expect(resolveSettings(specs, { flags: new Map(), env: {}, file }).addr.port).toBe(3);
    expect(resolveSettings(specs, { flags: new Map(), env: {}, file }).wait).toBe(3000);
    expect(resolveSettings(specs, { flags: new Map(), env: {} }).wait).toBe(1000);
  });

  it("names the setting in errors", () => {
    expect(() => resolveSettings(specs, { flags: new Map(), env: { WARREN_WAIT: "soon" } })).toThrowError('invalid WARREN_WAIT (WARREN_WAIT): "soon" is not a duration like 500ms, 3s, 5m or 24h');
    expect(() => parseCommandLine(["--nope"], specs)).toThrowError(/unknown flag --nope/);
    expect(() => parseCommandLine(["--addr"], specs)).toThrowError(/--addr needs a value/);
  });

  it("parses host:port forms and durations", () => {
    expect(parseHostPort(":8080")).toEqual({ host: "0.0.0.0", port: 8080 });
    expect(parseHostPort("[::1]:8080")).toEqual({ host: "::1", port: 8080 });
    expect(() => parseHostPort("8080")).toThrowError(/not host:port/);
    expect(parseDuration("500ms")).toBe(500);
    expect(parseDuration("1.5s")).toBe(1500);
    expect(parseDuration("24h")).toBe(86_400_000);
  });

  it("keeps what follows -- for the workload", () => {
    const cl = parseCommandLine(["run", "--wait", "1s", "--", "code-server", "--bind-addr", "127.0.0.1:8000"], specs);
    expect(cl.positionals).toEqual(["run"]);
    expect(cl.rest).toEqual(["code-server", "--bind-addr", "127.0.0.1:8000"]);
  });
});
