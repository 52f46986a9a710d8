/** One row of the benchmark table: a figure measured for several rivals in the same run. */
export interface BenchRow {
  /** What is measured, e.g. "HTTP requests/s (64 keep-alive connections)". */
  readonly figure: string;
  readonly unit: string;
  /** Values by rival ("direct", "warren", "ssh -R", ...). */
  readonly values: Readonly<Record<string, number>>;
  /** Ratios to print, as [numerator rival, denominator rival]. */
  readonly ratios?: ReadonlyArray<readonly [string, string]>;
  /** Whether a higher value is better (for the reader). */
  readonly higherIsBetter: boolean;
}

export interface BenchSection {
  readonly title: string;
  readonly rows: BenchRow[];
  /** Free-form notes (settings used, caveats). */
  readonly notes?: string[];
}

export interface BenchContext {
  /** Quick mode: small sizes and short runs, for a smoke test. */
  readonly quick: boolean;
  /** Repository root (absolute, ends with /). */
  readonly root: string;
  readonly log: (line: string) => void;
}
