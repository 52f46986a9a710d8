import type { WorkspaceRef } from "../domain/workspace-ref.js";

/** Where a proxied request goes: one port of one authorized workspace incarnation. */
export interface ProxyTarget {
  /** The workspace's name (for messages) and the id of the incarnation that was authorized. */
  readonly workspace: string;
  readonly workspaceId: string;
  readonly port: number;
}

export function sameTarget(a: ProxyTarget, b: ProxyTarget): boolean {
  return a.workspaceId === b.workspaceId && a.port === b.port;
}

/** What a dial names: the incarnation, never the name alone. */
export function workspaceRefOfTarget(target: ProxyTarget): WorkspaceRef {
  return { name: target.workspace, id: target.workspaceId };
}
