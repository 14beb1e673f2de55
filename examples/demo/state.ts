/** What the demo's cloud process (cloud.ts) writes to `DIRECTORY/cloud.json` once its hosts are up. */
export interface DemoCloud {
  /** The cloud process: SIGTERM removes the hosts. */
  pid: number;
  hosts: { name: string; address: string; user: string; hostKey: string; privateKeyFile: string }[];
}
