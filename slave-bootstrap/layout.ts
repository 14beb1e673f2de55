/** Where the bootstrapper puts things on a node: SlapOS's usual places. */
export const REMOTE = {
  /** The node's Python environment (zc.buildout, supervisor): `python_environment`. */
  pythonEnvironment: "/opt/slapos",
  wheels: "/opt/slapos/wheels",
  requirementsStamp: "/opt/slapos/.requirements.sha256",
  agent: "/opt/slapos/agent/slap-node.mjs",
  /** A Node runtime copied from the controller, when the host has none recent enough. */
  nodeBinary: "/opt/slapos/node/bin/node",
  serviceScript: "/opt/slapos/bin/slap-agent-service",
  servicePid: "/run/slap-agent-service.pid",
  serviceLog: "/var/log/slap-agent.log",
  systemdUnit: "/etc/systemd/system/slap-agent.service",
  config: "/etc/opt/slapos/slapos.cfg",
  certFile: "/etc/opt/slapos/ssl/computer.crt",
  keyFile: "/etc/opt/slapos/ssl/computer.key",
  masterCaFile: "/etc/opt/slapos/ssl/master-ca.crt",
  softwareRoot: "/opt/slapgrid",
  /** Software releases uploaded by the controller (the master's and its database's, for self-hosting). */
  releases: "/opt/slapos/releases",
  /** The seed master a self-hosted master starts from (slapproxy's role in SlapOS), and its state. */
  seedData: "/var/lib/slapos/seed",
  seedServiceScript: "/opt/slapos/bin/slap-seed-service",
  seedServicePid: "/run/slap-seed-service.pid",
  seedLog: "/var/log/slap-seed.log",
  /** Root's directory where the seed's backup waits for the master instance (its user reads the file). */
  handover: "/var/lib/slapos/handover",
  instanceRoot: "/srv/slapgrid",
} as const;
