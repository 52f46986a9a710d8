/** "in 7h", "3m ago", "just now": how tables show times (--json keeps the timestamps). */
export function relativeTime(iso: string | undefined, now = Date.now()): string {
  if (!iso) return "-";
  const at = Date.parse(iso);
  if (!Number.isFinite(at)) return iso;
  const diff = at - now;
  const abs = Math.abs(diff);
  if (abs < 10_000) return "just now";
  const units: Array<[number, string]> = [
    [86_400_000, "d"],
    [3_600_000, "h"],
    [60_000, "m"],
    [1000, "s"],
  ];
  const [size, unit] = units.find(([ms]) => abs >= ms)!;
  const text = `${Math.floor(abs / size)}${unit}`;
  return diff > 0 ? `in ${text}` : `${text} ago`;
}
