import type { WorkspaceRecord, WorkspaceSshIdentity } from "../domain/records.js";
import type { WorkspaceSshStore } from "../domain/store.js";
import { generateEd25519KeyPair } from "./ssh-keygen.js";

export interface WorkspaceSshIdentitiesOptions {
  readonly store: Pick<WorkspaceSshStore, "getSshIdentity" | "putSshIdentityIfAbsent">;
  /** Most identities cached in memory. */
  readonly cacheSize?: number;
}

/**
 * The key pair the SSH front door logs in to a workspace's sshd with: one per workspace,
 * generated on first need (an API read or an SSH login) and kept in the store, so every server
 * of a cluster uses the same one and the image can trust its public half.
 */
export class WorkspaceSshIdentities {
  readonly #options: WorkspaceSshIdentitiesOptions;
  readonly #cache = new Map<string, WorkspaceSshIdentity>();

  constructor(options: WorkspaceSshIdentitiesOptions) {
    this.#options = options;
  }

  /** Resolves with the workspace's identity, creating it when absent; rejects when the store fails. */
  async get(workspace: Pick<WorkspaceRecord, "name" | "createdAt">): Promise<WorkspaceSshIdentity> {
    const cached = this.#cache.get(workspace.name);
    if (cached && cached.workspaceCreatedAt === workspace.createdAt) return cached;
    let identity = await this.#options.store.getSshIdentity(workspace.name);
    if (!identity || identity.workspaceCreatedAt !== workspace.createdAt) {
      const pair = generateEd25519KeyPair(`warren@${workspace.name}`);
      identity = await this.#options.store.putSshIdentityIfAbsent(workspace.name, {
        workspaceCreatedAt: workspace.createdAt,
        privateKey: pair.privateKey,
        publicKey: pair.publicKey,
      });
    }
    this.#cache.delete(workspace.name);
    this.#cache.set(workspace.name, identity);
    if (this.#cache.size > (this.#options.cacheSize ?? 10_000)) this.#cache.delete(this.#cache.keys().next().value as string);
    return identity;
  }
}
