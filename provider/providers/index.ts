import type * as pulumi from "@pulumi/pulumi";
import type { ResourceKind } from "../dynamic.js";
import { ComputerProvider } from "./computer.js";
import type { StackSettings } from "./connection.js";
import { PartitionProvider } from "./partition.js";
import { SelfHostedMasterProvider } from "./self-hosted-master.js";
import { SoftwareInstanceProvider } from "./software-instance.js";
import { SoftwareReleaseProvider } from "./software-release.js";

/**
 * The entry point the serialized providers load at call time (see ../dynamic.ts): the
 * implementation of one resource kind, with the stack's `slapos:*` settings.
 */
export function providerFor(kind: ResourceKind, stack: StackSettings): pulumi.dynamic.ResourceProvider {
  switch (kind) {
    case "computer":
      return new ComputerProvider(stack);
    case "partition":
      return new PartitionProvider(stack);
    case "software-release":
      return new SoftwareReleaseProvider(stack);
    case "software-instance":
      return new SoftwareInstanceProvider(stack);
    case "self-hosted-master":
      return new SelfHostedMasterProvider();
  }
}
