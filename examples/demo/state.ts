/** What the demo's cloud process (cloud.ts) writes to `DIRECTORY/cloud.json` once it is up. */
export interface DemoCloud {
  /** The cloud process: SIGTERM stops the master and removes the hosts. */
  pid: number;
  masterUrl: string;
  /** The admin's client configuration (url, ca, certificate, key) the master wrote. */
  adminConfigFile?: string;
  hosts: { name: string; address: string; hostKey: string; privateKeyFile: string }[];
}
