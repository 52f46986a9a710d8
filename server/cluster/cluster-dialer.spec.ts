import { describe, expect, it } from "vitest";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import { createLogger } from "../../shared/logger.js";
import type { TunnelSocket } from "../../shared/tunnel-socket.js";
import type { DialOptions, Dialer } from "../tunnel/tunnel-dialer.js";
import { ClusterDialer, type ForwardOutcome } from "./cluster-dialer.js";
import type { WorkspaceRef } from "../domain/workspace-ref.js";
import type { HolderMiss, PresenceHolder, PresenceLookup } from "./presence.js";
import type { PeerDialer } from "./private-client.js";
import { HolderNotConnected, HolderUnreachable } from "./private-protocol.js";

const log = createLogger({ name: "cluster-dialer-spec", level: "silent" });
const SOCKET = { fake: "socket" } as unknown as TunnelSocket;

function holder(serverId: string): PresenceHolder {
  return { serverId, address: `${serverId}:8155`, expiresAt: 0, heartbeatExpiresAt: 0 };
}

/** Presence whose answers are scripted per lookup; records what was forgotten. */
class FakePresence implements PresenceLookup {
  lookups = 0;
  forgotten: Array<[string, HolderMiss]> = [];
  constructor(readonly answers: Array<PresenceHolder[] | Error>) {}
  async holders(): Promise<readonly PresenceHolder[]> {
    const answer = this.answers[Math.min(this.lookups++, this.answers.length - 1)]!;
    if (answer instanceof Error) throw answer;
    return answer;
  }
  forget(_workspace: string, h: PresenceHolder, why: HolderMiss): void {
    this.forgotten.push([h.serverId, why]);
  }
}

/** Peers that answer per server id. */
class FakePeers implements PeerDialer {
  tried: string[] = [];
  constructor(readonly behaviour: Record<string, Error | "ok">) {}
  async dial(h: PresenceHolder, _w: WorkspaceRef, _p: number, _o: DialOptions): Promise<TunnelSocket> {
    this.tried.push(h.serverId);
    const b = this.behaviour[h.serverId] ?? new HolderUnreachable("no such peer");
    if (b === "ok") return SOCKET;
    throw b;
  }
}

function dialer(options: { local?: Dialer; localHas?: boolean; presence: FakePresence; peers: FakePeers; outcomes?: ForwardOutcome[] }) {
  return new ClusterDialer({
    local: options.local ?? { dial: () => Promise.reject(new WarrenError(ErrorCode.Unavailable, "not here")) },
    localAgents: { isConnected: () => options.localHas ?? false },
    presence: options.presence,
    peers: options.peers,
    log,
    onForward: (o) => options.outcomes?.push(o),
  });
}

const W: WorkspaceRef = { name: "w", id: "ws_w" };

describe("ClusterDialer", () => {
  it("dials a local agent without asking presence", async () => {
    const presence = new FakePresence([[]]);
    const d = dialer({ local: { dial: async () => SOCKET }, localHas: true, presence, peers: new FakePeers({}) });
    expect(await d.dial(W, 80)).toBe(SOCKET);
    expect(presence.lookups).toBe(0);
  });

  it("passes a local dial's own errors through without forwarding", async () => {
    const presence = new FakePresence([[holder("b")]]);
    const d = dialer({
      local: { dial: () => Promise.reject(new WarrenError(ErrorCode.BadGateway, "nothing is listening")) },
      localHas: true,
      presence,
      peers: new FakePeers({ b: "ok" }),
    });
    await expect(d.dial(W, 80)).rejects.toMatchObject({ code: "bad_gateway" });
    expect(presence.lookups).toBe(0);
  });

  it("a stale holder costs one try, then the next serves", async () => {
    const outcomes: ForwardOutcome[] = [];
    const presence = new FakePresence([[holder("stale"), holder("gone"), holder("live")]]);
    const peers = new FakePeers({ stale: new HolderNotConnected("not here"), gone: new HolderUnreachable("refused"), live: "ok" });
    expect(await dialer({ presence, peers, outcomes }).dial(W, 80)).toBe(SOCKET);
    expect(peers.tried).toEqual(["stale", "gone", "live"]);
    expect(presence.forgotten).toEqual([
      ["stale", "not-connected"],
      ["gone", "unreachable"],
    ]);
    expect(outcomes).toEqual(["not_connected", "peer_unreachable", "ok"]);
  });

  it("reads presence once more after a miss (the first answer may be cached), never trying a holder twice", async () => {
    const presence = new FakePresence([[holder("old")], [holder("old"), holder("new")]]);
    const peers = new FakePeers({ old: new HolderNotConnected("moved"), new: "ok" });
    expect(await dialer({ presence, peers }).dial(W, 80)).toBe(SOCKET);
    expect(peers.tried).toEqual(["old", "new"]);
    expect(presence.lookups).toBe(2);
  });

  it("answers a clear 503 when no holder serves, after at most two lookups", async () => {
    const presence = new FakePresence([[holder("a")], [holder("a")]]);
    const peers = new FakePeers({ a: new HolderUnreachable("refused") });
    await expect(dialer({ presence, peers }).dial(W, 80)).rejects.toThrow('workspace "w" is not connected (server a does not answer)');
    expect(presence.lookups).toBe(2);
    const none = new FakePresence([[]]);
    await expect(dialer({ presence: none, peers }).dial(W, 80)).rejects.toThrow(/^workspace "w" is not connected$/);
    expect(none.lookups).toBe(1);
  });

  it("brings the holder's dial errors back as they are, without trying others", async () => {
    for (const code of [ErrorCode.BadGateway, ErrorCode.PermissionDenied, ErrorCode.DeadlineExceeded, ErrorCode.Unavailable]) {
      const presence = new FakePresence([[holder("a"), holder("b")]]);
      const peers = new FakePeers({ a: new WarrenError(code, `from a: ${code}`), b: "ok" });
      await expect(dialer({ presence, peers }).dial(W, 80)).rejects.toMatchObject({ code, message: `from a: ${code}` });
      expect(peers.tried).toEqual(["a"]);
    }
  });

  it("fails fast with unavailable when presence cannot be read", async () => {
    const presence = new FakePresence([new WarrenError(ErrorCode.Unavailable, "the cluster's Redis is unreachable")]);
    await expect(dialer({ presence, peers: new FakePeers({}) }).dial(W, 80)).rejects.toMatchObject({
      code: "unavailable",
      message: expect.stringMatching(/not connected to this server.*Redis is unreachable/),
    });
  });

  it("falls back to the cluster when the local agent left during the dial", async () => {
    let here = true;
    const d = new ClusterDialer({
      local: {
        dial: () => {
          here = false;
          return Promise.reject(new WarrenError(ErrorCode.Unavailable, 'workspace "w" is not connected'));
        },
      },
      localAgents: { isConnected: () => here },
      presence: new FakePresence([[holder("b")]]),
      peers: new FakePeers({ b: "ok" }),
      log,
    });
    expect(await d.dial(W, 80)).toBe(SOCKET);
  });
});
