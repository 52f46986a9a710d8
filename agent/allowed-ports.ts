/**
 * The ports the workspace lets its agent dial, as the server last said (Welcome, then
 * AllowedPorts whenever ports are exposed or unexposed at runtime), and the local connections
 * open to each: when a port stops being allowed, every connection to it is closed at once.
 */
export class AllowedPorts {
  #ports: Set<number>;
  readonly #open = new Map<number, Set<{ destroy(error?: Error): void }>>();

  constructor(ports: Iterable<number>) {
    this.#ports = new Set(ports);
  }

  has(port: number): boolean {
    return this.#ports.has(port);
  }

  get ports(): number[] {
    return [...this.#ports].sort((a, b) => a - b);
  }

  /**
   * Replaces the list; closes the open connections to every port no longer in it. Returns the
   * ports that were removed.
   */
  replace(ports: Iterable<number>): number[] {
    const next = new Set(ports);
    const removed = [...this.#ports].filter((p) => !next.has(p));
    this.#ports = next;
    for (const port of removed) {
      const open = this.#open.get(port);
      this.#open.delete(port);
      // With an error, so that the tunnel side is reset too rather than left half-open.
      for (const connection of open ?? []) connection.destroy(new Error(`port ${port} is no longer exposed`));
    }
    return removed;
  }

  /** Remembers an open connection to `port` until it closes (it is closed if the port goes). */
  track(port: number, connection: { destroy(error?: Error): void; once(event: "close", listener: () => void): unknown }): void {
    if (!this.#ports.has(port)) {
      connection.destroy(new Error(`port ${port} is no longer exposed`));
      return;
    }
    let open = this.#open.get(port);
    if (!open) this.#open.set(port, (open = new Set()));
    open.add(connection);
    connection.once("close", () => {
      const set = this.#open.get(port);
      set?.delete(connection);
      if (set?.size === 0) this.#open.delete(port);
    });
  }
}
