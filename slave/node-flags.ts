/**
 * How Node runs the long-lived agent (`slap node run`): a 1 MB young generation makes V8 collect
 * short-lived garbage (desired states, /proc scans) early instead of letting the heap grow, which
 * keeps an idle agent of a 100-partition node under 100 MB of RSS (bench/README.md).
 */
export const AGENT_NODE_FLAGS = ["--max-semi-space-size=1"];
