/** What the demo's cloud process (cloud.ts) writes to `DIRECTORY/cloud.json` once it is up. */
export interface DemoCloud {
  /** The cloud process: SIGTERM stops the master and removes the hosts. */
  pid: number;
  masterUrl: string;
  /** The provider's `slapos:*` stack config: the master and its admin's identity (the key secret). */
  stackConfig: Record<string, { value: string; secret?: boolean }>;
  hosts: { name: string; address: string; hostKey: string; privateKeyFile: string }[];
}
