/**
 * Where the master is and who the program is to it: a person's certificate issued by the master
 * (the `admin.json` that `slap master start` writes holds one).
 *
 * Resources take it as the `master` input (for a master created in the same program); otherwise
 * the stack config `slapos:masterUrl`, `slapos:caCertificate`, `slapos:certificate` and
 * `slapos:privateKey` (secret), or the environment `SLAPOS_MASTER_URL`, `SLAPOS_CA_CERTIFICATE`,
 * `SLAPOS_CERTIFICATE`, `SLAPOS_PRIVATE_KEY`, or a client configuration file named by
 * `SLAP_CONFIG`. Settings are read when the provider runs, never stored in its code.
 */
export interface MasterSettings {
  /** The master's URL, e.g. `https://10.0.0.1:8443/`. */
  url: string;
  /** The master's CA certificate (PEM), which the master's server certificate is checked against. */
  caCertificate?: string;
  /** The person's certificate (PEM) issued by the master. */
  certificate?: string;
  /** The person's private key (PEM). Kept secret in the state. */
  privateKey?: string;
}
