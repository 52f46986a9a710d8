/**
 * One workspace incarnation: the name people use and the immutable id it was created with. A
 * name used again later is another workspace with another id, so everything that reaches an
 * agent (dials, presence records, forwarded dials between servers) names both and matches on
 * the id: a connection of an earlier workspace of the same name never serves this one.
 */
export interface WorkspaceRef {
  readonly name: string;
  readonly id: string;
}
