import { describe, expect, it } from "vitest";
import type { Http2Session, ServerHttp2Stream } from "node:http2";
import { DisconnectReason } from "../../shared/gen/warren/v1/agent_pb.js";
import type { AgentConnection } from "./agent-connection.js";
import { TunnelRegistry } from "./tunnel-registry.js";

/** An agent connection with idle streams to hand out; no sockets. */
function fakeConnection(workspace: string, workspaceId: string, idle = 1) {
  const closers: Array<() => void> = [];
  const state = { idle, disconnected: undefined as DisconnectReason | undefined };
  const connection = {
    workspace,
    workspaceId,
    instanceId: `${workspaceId}-agent`,
    maxStreams: 10,
    session: {} as Http2Session,
    get usable() {
      return state.disconnected === undefined;
    },
    get streamCount() {
      return state.idle;
    },
    setIdleListener() {},
    onClose(handler: () => void) {
      closers.push(handler);
    },
    takeIdle() {
      if (state.disconnected !== undefined || state.idle === 0) return undefined;
      state.idle--;
      return { id: workspaceId } as unknown as ServerHttp2Stream;
    },
    requestStreams() {},
    markDraining() {},
    disconnect(reason: DisconnectReason) {
      state.disconnected = reason;
      for (const close of closers) close();
    },
  };
  return { connection: connection as unknown as AgentConnection, state };
}

describe("TunnelRegistry (workspace incarnations)", () => {
  it("hands a dial only an agent of the incarnation asked for, never one of an earlier workspace of the same name", async () => {
    const registry = new TunnelRegistry();
    const old = fakeConnection("dev", "ws_old");
    registry.register(old.connection);
    await expect(registry.acquire({ name: "dev", id: "ws_new" }, 0)).rejects.toMatchObject({ code: "unavailable", message: 'workspace "dev" is not connected' });
    expect(registry.isConnected("ws_new")).toBe(false);
    expect(old.state.idle).toBe(1);
    const acquired = await registry.acquire({ name: "dev", id: "ws_old" }, 0);
    expect(acquired.connection).toBe(old.connection);
  });

  it("tells presence by workspace id, and closes the earlier incarnation's agent when a newer one registers", () => {
    const changes: Array<[string, boolean]> = [];
    const registry = new TunnelRegistry({ onWorkspaceChange: (id, connected) => changes.push([id, connected]) });
    const old = fakeConnection("dev", "ws_old");
    registry.register(old.connection);
    const fresh = fakeConnection("dev", "ws_new");
    registry.register(fresh.connection);
    expect(old.state.disconnected).toBe(DisconnectReason.REVOKED);
    expect(changes).toEqual([
      ["ws_old", true],
      ["ws_old", false],
      ["ws_new", true],
    ]);
    expect(registry.holds("ws_old")).toBe(false);
    expect(registry.isConnected("ws_new")).toBe(true);
    expect(registry.connectionsOf("dev")).toEqual([fresh.connection]);
    expect([...registry.heldWorkspaces()]).toEqual(["ws_new"]);
  });

  it("a revocation by name reaches every incarnation held", () => {
    const registry = new TunnelRegistry();
    const a = fakeConnection("dev", "ws_a");
    registry.register(a.connection);
    expect(registry.disconnectWorkspace("dev", DisconnectReason.REVOKED, "deleted")).toBe(1);
    expect(registry.workspaceCount).toBe(0);
    expect(registry.connectionsOf("dev")).toEqual([]);
  });

  it("finds the incarnations of a name among thousands without touching the others, and forgets one whose last agent left", () => {
    const registry = new TunnelRegistry();
    const others = Array.from({ length: 2000 }, (_, i) => fakeConnection(`ws-${i}`, `ws_${i}`));
    for (const o of others) registry.register(o.connection);
    const old = fakeConnection("dev", "ws_old");
    registry.register(old.connection);
    old.connection.disconnect(DisconnectReason.REVOKED, "deleted");
    // Gone already: a new incarnation of the name closes nothing, and nobody else is touched.
    expect(registry.closeOtherIncarnations("dev", "ws_new")).toBe(0);
    const fresh = fakeConnection("dev", "ws_new");
    registry.register(fresh.connection);
    expect(fresh.state.disconnected).toBeUndefined();
    expect(others.every((o) => o.state.disconnected === undefined)).toBe(true);
    expect(registry.disconnectWorkspace("dev", DisconnectReason.REVOKED, "deleted")).toBe(1);
    expect(registry.workspaceCount).toBe(2000);
  });
});
