import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TokenKind } from "../server/domain/tokens.js";
import { RedisConnection } from "../server/cluster/redis-connection.js";
import { parseRedisUrl } from "../server/cluster/redis-url.js";
import type { ClusterEvent } from "../server/events/event-bus.js";
import { RedisEventBus } from "../server/events/redis-event-bus.js";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { EmbeddedStore } from "../server/store/embedded-store.js";
import { MemoryStore } from "../server/store/memory-store.js";
import { restoreBackup, writeBackup, type SnapshotSource } from "../server/store/snapshot.js";
import type { TokenRecord, WorkspaceRecord } from "../server/domain/records.js";
import { RedisStore } from "../server/store/redis-store.js";
import type { ControlStore } from "../server/domain/store.js";
import { createLogger } from "../shared/logger.js";
import { startRedis, type RedisHandle } from "./harness/cluster.js";
import { eventually } from "./harness/warren.js";
import { tempDir } from "./harness/temp-dirs.js";

const log = createLogger({ name: "store-test", level: "silent" });

function workspace(name: string, port = 8000): WorkspaceRecord {
  return { name, ports: [{ port, public: false }], createdAt: 1, agentTokenId: `id-${name}`, agentTokenExpiresAt: 2 };
}

const token: TokenRecord = { id: "0123456789abcdef", kind: TokenKind.Agent, hash: "ab".repeat(32), subject: "w", createdAt: 1, expiresAt: 2 };

let redis: RedisHandle;
const connections: RedisConnection[] = [];

async function connection(prefix = "warren"): Promise<RedisConnection> {
  const c = new RedisConnection({ target: parseRedisUrl(redis.url), prefix, log });
  await c.waitUntilReady();
  connections.push(c);
  return c;
}

beforeAll(async () => {
  redis = await startRedis();
});

afterAll(async () => {
  for (const c of connections) await c.close();
  await redis?.stop();
});

/** The same contract for both implementations: the Redis store must be a faithful one. */
const embeddedStores: EmbeddedStore[] = [];
async function embedded(): Promise<EmbeddedStore> {
  const dataDir = tempDir("warren-store-");
  const store = await EmbeddedStore.open({ path: join(dataDir, "store"), dataDir });
  embeddedStores.push(store);
  return store;
}
afterAll(async () => {
  for (const s of embeddedStores) await s.close();
});

const stores: Array<[string, () => Promise<ControlStore>]> = [
  ["memory", async () => new MemoryStore()],
  ["embedded", () => embedded()],
  ["redis", async () => new RedisStore({ redis: await connection(`contract-${Math.random().toString(36).slice(2)}`) })],
];

/** The stores that back up and restore. */
const snapshotStores: Array<[string, () => Promise<ControlStore & SnapshotSource>]> = [
  ["embedded", () => embedded()],
  ["redis", async () => new RedisStore({ redis: await connection(`backup-${Math.random().toString(36).slice(2)}`) })],
];

describe.each(snapshotStores)("backup of the %s store", (_name, make) => {
  it.each(snapshotStores)("restores into the %s store with every record, tokens hashed, and refuses a non-empty one without force", async (_target, makeTarget) => {
    const source = await make();
    await source.createUser({ name: "alice", createdAt: 1 });
    await source.putToken({ ...token, subject: "alice" });
    await source.createWorkspace({ ...workspace("w"), owner: "alice", sealedVariables: "v1.sealed", variableNames: ["A"] });
    await source.addSshKey({ fingerprint: "SHA256:k", user: "alice", publicKey: "ssh-ed25519 AAAA", title: "t", createdAt: 1 });
    // The same key registered by another user is a registration of its own, carried too.
    await source.addSshKey({ fingerprint: "SHA256:k", user: "bob", publicKey: "ssh-ed25519 AAAA", title: "t", createdAt: 2 });
    await source.putSshIdentityIfAbsent("w", { workspaceCreatedAt: 1, privateKey: "priv", publicKey: "pub" });
    await source.pinHostKeyIfAbsent("w", { workspaceCreatedAt: 1, publicKey: "ssh-ed25519 BBBB", fingerprint: "SHA256:h", pinnedAt: 2 });
    const file = new PassThrough();
    const chunks: Buffer[] = [];
    file.on("data", (c: Buffer) => chunks.push(c));
    expect(await writeBackup(source, file, { source: "test" })).toBe(7);
    const text = Buffer.concat(chunks).toString("utf8");
    expect(text).toContain(token.hash);
    expect(text).toContain("v1.sealed");

    const target = await makeTarget();
    await target.createUser({ name: "someone-else", createdAt: 1 });
    await expect(restoreBackup(target, PassThrough.from([text]), { force: false })).rejects.toMatchObject({ code: "failed_precondition" });
    expect(await restoreBackup(target, PassThrough.from([text]), { force: true })).toBe(7);
    expect((await target.listUsers()).map((u) => u.name)).toEqual(["alice"]);
    expect(await target.getToken(token.id)).toEqual({ ...token, subject: "alice" });
    expect((await target.listWorkspaces()).map((w) => [w.name, w.sealedVariables])).toEqual([["w", "v1.sealed"]]);
    expect((await target.listSshKeys("alice")).map((k) => k.fingerprint)).toEqual(["SHA256:k"]);
    expect((await target.findSshKeys("SHA256:k")).map((k) => k.user)).toEqual(["alice", "bob"]);
    expect((await target.getSshIdentity("w"))?.privateKey).toBe("priv");
    expect((await target.getPinnedHostKey("w"))?.fingerprint).toBe("SHA256:h");
  });

  it("refuses a file that is not a backup, changing nothing", async () => {
    const target = await make();
    await expect(restoreBackup(target, PassThrough.from(["{\"hello\":1}\n"]), { force: true })).rejects.toMatchObject({ code: "invalid_argument" });
    const newer = JSON.stringify({ format: "warren-backup", formatVersion: 1, schemaVersion: 999 });
    await expect(restoreBackup(target, PassThrough.from([newer + "\n"]), { force: true })).rejects.toThrow(/schema version 999, newer than this server's 1/);
  });
});

describe.each(stores)("%s store", (_name, make) => {
  it("creates, reads, lists, updates and deletes workspaces", async () => {
    const store = await make();
    await store.createWorkspace(workspace("b"));
    await store.createWorkspace(workspace("a"));
    await expect(store.createWorkspace(workspace("a", 9000))).rejects.toMatchObject({ code: "already_exists" });
    expect(await store.getWorkspace("a")).toEqual(workspace("a"));
    expect(await store.getWorkspace("zz")).toBeUndefined();
    expect((await store.listWorkspaces()).map((w) => w.name)).toEqual(["a", "b"]);
    await store.updateWorkspace(workspace("a", 9000));
    expect((await store.getWorkspace("a"))?.ports[0]?.port).toBe(9000);
    await expect(store.updateWorkspace(workspace("zz"))).rejects.toMatchObject({ code: "not_found" });
    expect(await store.deleteWorkspace("a")).toBe(true);
    expect(await store.deleteWorkspace("a")).toBe(false);
    expect(await store.getWorkspace("a")).toBeUndefined();
    expect((await store.listWorkspaces()).map((w) => w.name)).toEqual(["b"]);
  });

  it("stores tokens by id, expired or not, and deletes them", async () => {
    const store = await make();
    await store.putToken(token);
    expect(await store.getToken(token.id)).toEqual(token);
    await store.putToken({ ...token, expiresAt: 0 });
    expect((await store.getToken(token.id))?.expiresAt).toBe(0);
    await store.deleteToken(token.id);
    expect(await store.getToken(token.id)).toBeUndefined();
    await store.deleteToken(token.id);
  });

  it("lists a user's access tokens, and forgets a deleted one", async () => {
    const store = await make();
    const access = (id: string, subject: string): TokenRecord => ({ ...token, id, kind: TokenKind.Access, subject, name: `t-${id}` });
    await store.putToken(access("1111111111111111", "alice"));
    await store.putToken(access("2222222222222222", "alice"));
    await store.putToken(access("3333333333333333", "bob"));
    expect((await store.listTokens("alice")).map((t) => t.id).sort()).toEqual(["1111111111111111", "2222222222222222"]);
    await store.deleteToken("1111111111111111");
    expect((await store.listTokens("alice")).map((t) => [t.id, t.name])).toEqual([["2222222222222222", "t-2222222222222222"]]);
    expect(await store.listTokens("carol")).toEqual([]);
  });

  it("lists a user's enrollment tokens beside their access tokens, and forgets a revoked one", async () => {
    const store = await make();
    const enrollment: TokenRecord = { ...token, id: "4444444444444444", kind: TokenKind.Enrollment, subject: "dora", maxWorkspaceTtlMs: 3_600_000, allowedPorts: [8000] };
    await store.putToken(enrollment);
    await store.putToken({ ...token, id: "5555555555555555", kind: TokenKind.Access, subject: "dora" });
    expect((await store.listTokens("dora")).map((t) => [t.id, t.kind]).sort()).toEqual([["4444444444444444", "wen"], ["5555555555555555", "wut"]]);
    expect(await store.getToken(enrollment.id)).toEqual(enrollment);
    await store.deleteToken(enrollment.id);
    expect((await store.listTokens("dora")).map((t) => t.id)).toEqual(["5555555555555555"]);
  });

  it("updates a workspace only from the revision it was read at (compare-and-set)", async () => {
    const store = await make();
    await store.createWorkspace(workspace("cas"));
    expect(await store.updateWorkspaceIf({ ...workspace("cas", 1), revision: 1 }, 0)).toBe(true);
    // A second writer that read revision 0 loses.
    expect(await store.updateWorkspaceIf({ ...workspace("cas", 2), revision: 1 }, 0)).toBe(false);
    expect((await store.getWorkspace("cas"))?.ports[0]?.port).toBe(1);
    expect(await store.updateWorkspaceIf({ ...workspace("cas", 3), revision: 2 }, 1)).toBe(true);
    expect(await store.updateWorkspaceIf({ ...workspace("gone"), revision: 1 }, 0)).toBe(false);
  });

  it("creates, reads and lists users", async () => {
    const store = await make();
    await store.createUser({ name: "bob", createdAt: 1 });
    await store.createUser({ name: "alice", createdAt: 2 });
    await expect(store.createUser({ name: "bob", createdAt: 3 })).rejects.toMatchObject({ code: "already_exists" });
    expect(await store.getUser("bob")).toEqual({ name: "bob", createdAt: 1 });
    expect(await store.getUser("nobody")).toBeUndefined();
    expect((await store.listUsers()).map((u) => u.name)).toEqual(["alice", "bob"]);
  });

  it("hands out a login code once", async () => {
    const store = await make();
    const code = { id: "c0de", hash: "ab", host: "8000-w", tokenId: "admin", expiresAt: Date.now() + 60_000 };
    await store.putLoginCode(code);
    expect(await store.takeLoginCode("c0de")).toEqual(code);
    expect(await store.takeLoginCode("c0de")).toBeUndefined();
  });

  it("keeps SSH keys per user: several users may register one key, and each registration is theirs alone", async () => {
    const store = await make();
    const key = (fingerprint: string, user: string, createdAt: number) => ({ fingerprint, user, publicKey: `ssh-ed25519 ${fingerprint}`, title: "t", createdAt });
    await store.addSshKey(key("SHA256:b", "carol", 2));
    await store.addSshKey(key("SHA256:a", "carol", 1));
    await expect(store.addSshKey(key("SHA256:a", "carol", 4))).rejects.toMatchObject({ code: "already_exists" });
    await store.addSshKey(key("SHA256:a", "dave", 3));
    expect((await store.listSshKeys("carol")).map((k) => k.fingerprint)).toEqual(["SHA256:a", "SHA256:b"]);
    expect(await store.listSshKeys("dave")).toEqual([key("SHA256:a", "dave", 3)]);
    expect(await store.findSshKeys("SHA256:a")).toEqual([key("SHA256:a", "carol", 1), key("SHA256:a", "dave", 3)]);
    expect(await store.removeSshKey("erin", "SHA256:a")).toBe(false);
    expect(await store.removeSshKey("carol", "SHA256:a")).toBe(true);
    expect(await store.removeSshKey("carol", "SHA256:a")).toBe(false);
    expect(await store.findSshKeys("SHA256:a")).toEqual([key("SHA256:a", "dave", 3)]);
    expect(await store.findSshKeys("SHA256:none")).toEqual([]);
    expect((await store.listSshKeys("carol")).map((k) => k.fingerprint)).toEqual(["SHA256:b"]);
  });

  it("remembers one SSH identity and host key per workspace incarnation", async () => {
    const store = await make();
    const first = { workspaceCreatedAt: 10, privateKey: "priv-1", publicKey: "pub-1" };
    expect(await store.putSshIdentityIfAbsent("w", first)).toEqual(first);
    // A racing server's own identity loses to the one stored first.
    expect(await store.putSshIdentityIfAbsent("w", { ...first, privateKey: "priv-2" })).toEqual(first);
    // A new workspace of the same name replaces what an old one left.
    const reborn = { workspaceCreatedAt: 20, privateKey: "priv-3", publicKey: "pub-3" };
    expect(await store.putSshIdentityIfAbsent("w", reborn)).toEqual(reborn);
    expect(await store.getSshIdentity("w")).toEqual(reborn);
    const pinned = { workspaceCreatedAt: 20, publicKey: "ssh-ed25519 AAAA", fingerprint: "SHA256:x", pinnedAt: 5 };
    expect(await store.pinHostKeyIfAbsent("w", pinned)).toEqual(pinned);
    expect(await store.pinHostKeyIfAbsent("w", { ...pinned, fingerprint: "SHA256:y" })).toEqual(pinned);
    expect(await store.getPinnedHostKey("w")).toEqual(pinned);
    expect(await store.forgetHostKey("w")).toBe(true);
    expect(await store.forgetHostKey("w")).toBe(false);
    expect(await store.getPinnedHostKey("w")).toBeUndefined();
  });
});

describe("Redis store and event bus in a cluster", () => {
  it("reads, lists and removes SSH keys an earlier version stored with one owner per fingerprint", async () => {
    const c = await connection("contract-legacy-keys");
    const store = new RedisStore({ redis: c });
    const old = { fingerprint: "SHA256:old", user: "carol", publicKey: "ssh-ed25519 old", title: "t", createdAt: 1 };
    await c.client.set("contract-legacy-keys:ssh-key:SHA256:old", JSON.stringify(old));
    await c.client.sadd("contract-legacy-keys:ssh-keys:carol", "SHA256:old");
    expect(await store.findSshKeys("SHA256:old")).toEqual([old]);
    expect(await store.listSshKeys("carol")).toEqual([old]);
    await expect(store.addSshKey({ ...old, createdAt: 2 })).rejects.toMatchObject({ code: "already_exists" });
    const dave = { ...old, user: "dave", createdAt: 3 };
    await store.addSshKey(dave);
    expect(await store.findSshKeys("SHA256:old")).toEqual([old, dave]);
    expect(await store.removeSshKey("carol", "SHA256:old")).toBe(true);
    expect(await store.findSshKeys("SHA256:old")).toEqual([dave]);
    expect(await store.listSshKeys("carol")).toEqual([]);
  });

  it("keeps every key under the prefix, tokens hashed", async () => {
    const store = new RedisStore({ redis: await connection("keys") });
    await store.createWorkspace(workspace("w"));
    await store.putToken(token);
    const keys = redis.cli("--scan", "--pattern", "*").split("\n").filter((k) => !k.startsWith("contract-") && !k.startsWith("backup-") && !k.startsWith("warren:"));
    expect(keys.sort()).toEqual(["keys:token:0123456789abcdef", "keys:workspace:w", "keys:workspaces"]);
    expect(redis.cli("GET", "keys:token:0123456789abcdef")).toContain(token.hash);
  });

  it("fails at once with unavailable while Redis does not answer", async () => {
    const store = new RedisStore({ redis: await connection("down") });
    redis.pause();
    try {
      let started = Date.now();
      await expect(store.getWorkspace("w")).rejects.toMatchObject({ code: "unavailable" });
      expect(Date.now() - started).toBeLessThan(2000);
      started = Date.now();
      await expect(store.createWorkspace(workspace("w"))).rejects.toMatchObject({ code: "unavailable" });
      expect(Date.now() - started).toBeLessThan(50);
    } finally {
      redis.resume();
    }
    await eventually(async () => (await store.getWorkspace("w").then(() => true, () => false)), 5000, "store answers again");
  });

  it("delivers events to every server, once each, the publisher's at once", async () => {
    const received = new Map<string, ClusterEvent[]>();
    const buses = await Promise.all(
      ["s1", "s2", "s3"].map(async (id) => {
        const bus = new RedisEventBus({ redis: await connection("bus"), serverId: id, log });
        await bus.start();
        received.set(id, []);
        bus.subscribe((e) => received.get(id)!.push(e));
        return bus;
      }),
    );
    const event: ClusterEvent = { type: "workspace-revoked", workspace: "w", reason: "deleted" };
    const publishing = buses[0]!.publish(event);
    expect(received.get("s1")).toEqual([event]);
    await publishing;
    await eventually(() => received.get("s2")!.length === 1 && received.get("s3")!.length === 1, 2000, "events delivered");
    await new Promise((r) => setTimeout(r, 100));
    for (const id of ["s1", "s2", "s3"]) expect(received.get(id), id).toEqual([event]);
  });
});
