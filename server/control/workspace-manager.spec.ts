import { pino } from "pino";
import { describe, expect, it } from "vitest";
import type { Principal } from "../domain/principal.js";
import { SecretBox } from "../auth/secret-box.js";
import { KeyPurpose, SecretKeys } from "../auth/secret-keys.js";
import { LocalEventBus, type ClusterEvent } from "../events/event-bus.js";
import { MemoryStore } from "../store/memory-store.js";
import { workspaceIdOf } from "../domain/records.js";
import { WorkspaceManager } from "./workspace-manager.js";

const admin: Principal = { kind: "admin", tokenId: "admin:x" };
const alice: Principal = { kind: "user", user: "alice", tokenId: "aaaaaaaaaaaaaaaa" };
const bob: Principal = { kind: "user", user: "bob", tokenId: "bbbbbbbbbbbbbbbb" };

function setup(options: { connected?: boolean | (() => boolean) } = {}) {
  let now = 1_700_000_000_000;
  const store = new MemoryStore({ now: () => now });
  const events = new LocalEventBus();
  const seen: ClusterEvent[] = [];
  events.subscribe((e) => seen.push(e));
  const manager = new WorkspaceManager({
    workspaces: store,
    tokens: store,
    users: store,
    events,
    secretBox: new SecretBox(new SecretKeys("a server secret of at least thirty-two characters").derive(KeyPurpose.Variables)),
    agentTokenTtlMs: 86_400_000,
    isConnected: async () => (typeof options.connected === "function" ? options.connected() : (options.connected ?? true)),
    log: pino({ level: "silent" }),
    terminateGraceMs: 10_000,
    now: () => now,
  });
  return { store, manager, seen, advance: (ms: number) => (now += ms), now: () => now };
}

describe("workspace manager", () => {
  it("terminates a workspace when its time to live passes, on the clock it is given", async () => {
    const { manager, store, seen, advance } = setup({ connected: false });
    const { workspace, agentToken } = await manager.create(admin, { name: "short", ports: [], ttlMs: 60_000 });
    expect(workspace.agentTokenExpiresAt).toBe(workspace.expiresAt);
    advance(59_999);
    await manager.sweep();
    expect((await store.getWorkspace("short"))!.desiredState).toBe("Running");
    advance(1);
    await manager.sweep();
    const after = (await store.getWorkspace("short"))!;
    expect(after.desiredState).toBe("Terminated");
    // No agent connected: nothing to wait for.
    expect(after.actualState).toBe("Terminated");
    expect(await store.getToken(workspace.agentTokenId)).toBeUndefined();
    expect(seen).toContainEqual({ type: "workspace-revoked", workspace: "short", workspaceId: workspace.id, reason: 'workspace "short" was terminated' });
    expect(agentToken).toMatch(/^wat_/);
    // Kept for a while so people see what happened, then removed.
    advance(3_600_000);
    await manager.sweep();
    expect(await store.getWorkspace("short")).toBeUndefined();
  });

  it("terminates a CI job's workspace whose agent is gone for two minutes; other workspaces wait for theirs", async () => {
    let connected = true;
    const { manager, store, advance } = setup({ connected: () => connected });
    const ci = { issuer: "https://gitlab.example.com", project: "group/app", job: "302" };
    const job = (await manager.create(alice, { name: "job", ports: [], ttlMs: 6 * 3_600_000, ci })).workspace;
    await manager.create(alice, { name: "never", ports: [], ttlMs: 6 * 3_600_000, ci });
    const plain = (await manager.create(alice, { name: "plain", ports: [] })).workspace;
    for (const w of [job, plain]) await manager.report(w.name, w.id!, "c1", "Running");
    advance(60_000);
    connected = false;
    for (const w of [job, plain]) await manager.agentGone(w.name, w.id!, "c1");
    advance(60_000);
    await manager.sweep();
    // No agent ever came for "never" in two minutes: its job is over.
    expect((await store.getWorkspace("never"))!.desiredState).toBe("Terminated");
    expect((await store.getWorkspace("job"))!.actualState).toBe("Unknown");
    advance(60_000);
    await manager.sweep();
    expect((await store.getWorkspace("job"))!.desiredState).toBe("Terminated");
    expect((await store.getWorkspace("plain"))!.desiredState).toBe("Running");
  });

  it("waits for the connected agent to stop its workload, then gives up after the grace period", async () => {
    const { manager, store, advance } = setup({ connected: true });
    const { workspace } = await manager.create(admin, { name: "slow", ports: [] });
    await manager.report("slow", workspace.id!, "c1", "Running");
    const terminating = await manager.act(admin, "slow", "terminate");
    expect(terminating.actualState).toBe("Terminating");
    await manager.report("slow", workspace.id!, "c1", "Stopping");
    expect((await store.getWorkspace("slow"))!.actualState).toBe("Terminating");
    advance(10_000);
    await manager.sweep();
    expect((await store.getWorkspace("slow"))!.actualState).toBe("Terminated");
  });

  it("completes a restart: RestartRequested until the agent reports Stopped, then Running", async () => {
    const { manager, store } = setup();
    const id = (await manager.create(admin, { name: "re", ports: [] })).workspace.id!;
    for (const s of ["Starting", "Running"] as const) await manager.report("re", id, "c1", s);
    expect((await manager.act(admin, "re", "restart")).desiredState).toBe("RestartRequested");
    await manager.report("re", id, "c1", "Stopping");
    await manager.report("re", id, "c1", "Stopped");
    const w = (await store.getWorkspace("re"))!;
    expect([w.desiredState, w.actualState]).toEqual(["Running", "Stopped"]);
    // Only the loss of the connection that reported last makes the state Unknown.
    await manager.agentGone("re", id, "other");
    expect((await store.getWorkspace("re"))!.actualState).toBe("Stopped");
    await manager.agentGone("re", id, "c1");
    expect((await store.getWorkspace("re"))!.actualState).toBe("Unknown");
  });

  it("keeps users to their own workspaces and answers not_found for others'", async () => {
    const { manager, store } = setup();
    await store.createUser({ name: "alice", createdAt: 0 });
    await store.createUser({ name: "bob", createdAt: 0 });
    await manager.create(alice, { name: "alices", ports: [] });
    await manager.create(admin, { name: "bobs", ports: [], owner: "bob" });
    expect((await manager.list(alice)).map((w) => w.name)).toEqual(["alices"]);
    expect((await manager.list(admin)).map((w) => w.name)).toEqual(["alices", "bobs"]);
    await expect(manager.get(alice, "bobs")).rejects.toThrow('workspace "bobs" not found');
    await expect(manager.act(alice, "bobs", "stop")).rejects.toThrow('workspace "bobs" not found');
    await expect(manager.get(alice, "nothing")).rejects.toThrow('workspace "nothing" not found');
    await expect(manager.create(bob, { name: "x", ports: [], owner: "alice" })).rejects.toThrow(/^owner:/);
    await expect(manager.create(admin, { name: "y", ports: [], owner: "carol" })).rejects.toThrow(/^owner: no user "carol"/);
  });

  it("stores variables sealed, never as plaintext, and opens them for the agent", async () => {
    const { manager, store } = setup();
    const secret = "s3cr3t-value-that-must-not-leak";
    await manager.create(admin, {
      name: "vars",
      ports: [],
      variables: [
        { name: "API_KEY", value: secret, file: false },
        { name: "CONFIG", value: `line1\n${secret}\n`, file: true },
      ],
    });
    const record = (await store.getWorkspace("vars"))!;
    expect(JSON.stringify(record)).not.toContain(secret);
    expect(JSON.stringify(record)).not.toContain(Buffer.from(secret).toString("base64"));
    expect(record.variableNames).toEqual(["API_KEY", "CONFIG"]);
    expect(manager.variablesOf(record)).toEqual([
      { name: "API_KEY", value: secret, file: false },
      { name: "CONFIG", value: `line1\n${secret}\n`, file: true },
    ]);
    // Sealed to its own workspace: copied onto another record it does not open.
    await manager.create(admin, { name: "other", ports: [] });
    const other = { ...(await store.getWorkspace("other"))!, sealedVariables: record.sealedVariables };
    expect(() => manager.variablesOf(other)).toThrow(/cannot decrypt/);
  });

  it("validates variables, naming the field", async () => {
    const { manager } = setup();
    const bad: Array<[Array<{ name: string; value: string; file: boolean }>, RegExp]> = [
      [[{ name: "1X", value: "", file: false }], /^variables\[0\]\.name: "1X" is not a valid variable name/],
      [[{ name: "A", value: "", file: false }, { name: "A", value: "", file: false }], /^variables\[1\]\.name: "A" is listed twice/],
      [[{ name: "BIG", value: "x".repeat(70_000), file: false }], /^variables\[0\]\.value: 70000 bytes is over the limit/],
      [[{ name: "NUL", value: "a\0b", file: false }], /^variables\[0\]\.value: .*NUL/],
    ];
    for (const [variables, message] of bad) await expect(manager.create(admin, { name: "v", ports: [], variables })).rejects.toThrow(message);
    await expect(manager.create(admin, { name: "v", ports: [], ttlMs: 400 * 86_400_000 })).rejects.toThrow(/^ttlSeconds: /);
  });

  it("rotates the agent token: the old one is gone, agents are told to go", async () => {
    const { manager, store, seen } = setup();
    const { workspace } = await manager.create(admin, { name: "rot", ports: [] });
    const { workspace: after, agentToken } = await manager.rotateAgentToken(admin, "rot");
    expect(after.agentTokenId).not.toBe(workspace.agentTokenId);
    expect(agentToken).toMatch(new RegExp(`^wat_${after.agentTokenId}`));
    expect(await store.getToken(workspace.agentTokenId)).toBeUndefined();
    expect(await store.getToken(after.agentTokenId)).toBeDefined();
    expect(seen.some((e) => e.type === "workspace-revoked" && /rotated/.test(e.reason))).toBe(true);
  });

  it("reuses the name of a terminated workspace as a new workspace, with an id of its own", async () => {
    const { manager, seen } = setup({ connected: false });
    const first = (await manager.create(admin, { name: "again", ports: [] })).workspace;
    await manager.act(admin, "again", "terminate");
    const { workspace } = await manager.create(admin, { name: "again", ports: [] });
    expect(workspace.actualState).toBe("CreationRequested");
    expect(workspace.id).toMatch(/^ws_[0-9a-f]{32}$/);
    expect(workspace.id).not.toBe(first.id);
    expect(seen).toContainEqual({ type: "workspace-created", workspace: "again", workspaceId: workspace.id });
  });

  it("regression: a workload report from an agent of an earlier workspace of the same name changes nothing", async () => {
    const { manager, store } = setup({ connected: false });
    const old = (await manager.create(admin, { name: "dev", ports: [] })).workspace;
    await manager.delete(admin, "dev");
    const current = (await manager.create(admin, { name: "dev", ports: [] })).workspace;
    await manager.report("dev", old.id!, "c-old", "Failed", { exitCode: 1, message: "forged" });
    await manager.agentGone("dev", old.id!, "c-old");
    const stored = (await store.getWorkspace("dev"))!;
    expect(stored.actualState).toBe("CreationRequested");
    expect(stored.revision).toBe(current.revision);
    await manager.report("dev", current.id!, "c-new", "Running");
    expect((await store.getWorkspace("dev"))!.actualState).toBe("Running");
  });

  it("gives records written before incarnation ids a stable id derived from what never changes", () => {
    const legacy = { name: "old", createdAt: 1_600_000_000_000 };
    expect(workspaceIdOf(legacy)).toBe(workspaceIdOf({ ...legacy }));
    expect(workspaceIdOf(legacy)).not.toBe(workspaceIdOf({ ...legacy, createdAt: legacy.createdAt + 1 }));
    expect(workspaceIdOf({ ...legacy, id: "ws_1" })).toBe("ws_1");
  });

  it("retries a compare-and-set that lost a race", async () => {
    const { manager, store } = setup();
    const id = (await manager.create(admin, { name: "race", ports: [] })).workspace.id!;
    // Two reports at once: both apply, in order, none is lost.
    await Promise.all([manager.report("race", id, "c1", "Starting"), manager.report("race", id, "c1", "Running")]);
    const w = (await store.getWorkspace("race"))!;
    expect(w.actualState).toBe("Running");
    expect(w.revision).toBe(3);
  });
});
