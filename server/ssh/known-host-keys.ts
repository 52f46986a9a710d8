import type { WorkspaceRecord } from "../domain/records.js";
import type { WorkspaceSshStore } from "../domain/store.js";
import { fingerprintOf } from "../domain/ssh-public-key.js";

export type HostKeyCheck =
  | { readonly ok: true; readonly firstUse: boolean; readonly fingerprint: string }
  | { readonly ok: false; readonly expected: string; readonly presented: string };

export interface KnownHostKeysOptions {
  readonly store: Pick<WorkspaceSshStore, "getPinnedHostKey" | "pinHostKeyIfAbsent" | "forgetHostKey">;
  readonly now?: () => number;
}

/**
 * Trust on first use for workspace sshd host keys: the first key a workspace presents is
 * remembered, and a different one later is refused (the relay would otherwise hand the
 * person's session to whatever answers on the workspace's SSH port).
 */
export class KnownHostKeys {
  readonly #options: KnownHostKeysOptions;

  constructor(options: KnownHostKeysOptions) {
    this.#options = options;
  }

  /** Compares (or pins, on first use) the key blob the workspace's sshd presented. Rejects when the store fails. */
  async check(workspace: Pick<WorkspaceRecord, "name" | "createdAt">, blob: Buffer): Promise<HostKeyCheck> {
    const presented = blobLine(blob);
    const fingerprint = fingerprintOf(blob);
    let pinned = await this.#options.store.getPinnedHostKey(workspace.name);
    let firstUse = false;
    if (!pinned || pinned.workspaceCreatedAt !== workspace.createdAt) {
      pinned = await this.#options.store.pinHostKeyIfAbsent(workspace.name, {
        workspaceCreatedAt: workspace.createdAt,
        publicKey: presented,
        fingerprint,
        pinnedAt: (this.#options.now ?? Date.now)(),
      });
      firstUse = pinned.publicKey === presented;
    }
    if (pinned.publicKey !== presented) return { ok: false, expected: pinned.fingerprint, presented: fingerprint };
    return { ok: true, firstUse, fingerprint };
  }

  /** Forgets the workspace's pinned key; the next connection pins whatever it is shown. */
  forget(workspace: string): Promise<boolean> {
    return this.#options.store.forgetHostKey(workspace);
  }
}

/** `<type> <base64>` of an SSH key blob (the type is the blob's first string). */
function blobLine(blob: Buffer): string {
  const len = blob.length >= 4 ? blob.readUInt32BE(0) : 0;
  const type = blob.subarray(4, 4 + len).toString("latin1");
  return `${type} ${blob.toString("base64")}`;
}
