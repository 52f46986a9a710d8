import type { HeldWorkspaces } from "../../server/cluster/redis-presence.js";

/** The tunnel registry as presence sees it: the workspace ids with an agent here, set by the test. */
export class FakeRegistry implements HeldWorkspaces {
  readonly set = new Set<string>();
  heldWorkspaces(): Iterable<string> {
    return this.set;
  }
  holds(workspace: string): boolean {
    return this.set.has(workspace);
  }
  isConnected(workspace: string): boolean {
    return this.set.has(workspace);
  }
}
