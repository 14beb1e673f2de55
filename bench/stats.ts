export interface LatencySummary {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** Percentiles (nearest rank) of latencies in milliseconds, rounded to 0.1 ms. */
export function summarize(latencies: number[]): LatencySummary {
  const sorted = [...latencies].sort((a, b) => a - b);
  const at = (fraction: number) => {
    if (sorted.length === 0) return 0;
    const index = Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1);
    return Math.round((sorted[Math.max(0, index)] ?? 0) * 10) / 10;
  };
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1) };
}
