import { afterAll, beforeAll, expect, it } from "vitest";
import { timeoutsOf } from "../../provider/dynamic.js";
import { Computer, Partition, SoftwareInstance, SoftwareRelease } from "../../provider/index.js";
import { describeWith } from "../support/requirements.js";
import { pulumiRequirements, TestStack } from "./harness.js";

const HOST_KEY = `SHA256:${"A".repeat(43)}`;

describeWith(pulumiRequirements, "the provider refuses bad inputs in the preview, naming each", () => {
  let stack: TestStack;
  let declare: () => void = () => {};

  beforeAll(async () => {
    // No master is needed: check runs before anything is created.
    stack = await TestStack.create({ projectName: "provider-check", program: async () => declare() });
  });

  afterAll(async () => {
    await stack?.dispose();
  });

  const previewError = async () => {
    const failed = await stack.preview().catch((error: Error) => error);
    expect(failed).toBeInstanceOf(Error);
    return String((failed as Error).message);
  };

  it("computer: an unpinned host key, no partitions, a negative price, unknown capabilities, a user without sudo, an unknown allocation scope", async () => {
    declare = () => {
      new Computer("bad", {
        ssh: { host: "203.0.113.7", hostKey: "ssh-ed25519 AAAA", user: "deploy", sudo: false },
        partitionCount: 0,
        pricePerHour: -1,
        capabilities: { cpu_cores: 0, gpu: 1 } as never,
        allocationScope: "public" as never,
      });
    };
    const message = await previewError();
    expect(message).toContain("ssh.hostKey");
    expect(message).toContain("host keys are pinned, never trusted blindly");
    expect(message).toContain("partitionCount must be an integer from 1 to 1000");
    // The master's own rules (protocol/api.ts), applied before anything is created.
    expect(message).toContain(
      "property pricePerHour value {-1} has a problem: Too small: expected number to be >=0",
    );
    expect(message).toContain("property capabilities.cpu_cores value {<nil>} has a problem: Too small");
    expect(message).toContain('has a problem: Unrecognized key: "gpu"');
    expect(message).toContain("'deploy' must run commands through password-less sudo");
    expect(message).toContain("property allocationScope value {public} has a problem");
  }, 120_000);

  it("instance: an empty title, a destroyed state, a parameter that is not a string, an unknown sharing scope", async () => {
    declare = () => {
      new SoftwareInstance("bad", {
        title: " ",
        softwareRelease: "https://example.org/software.cfg",
        state: "destroyed" as "stopped",
        sharingScope: "everyone" as never,
        parameters: { nested: { a: 1 } as unknown as string },
      });
    };
    const message = await previewError();
    expect(message).toContain("an instance needs a non-empty title");
    expect(message).toContain('state must be "started" or "stopped", not "destroyed"');
    expect(message).toContain("parameters.nested must be a string, a number or a boolean");
    expect(message).toContain("property sharingScope value {everyone} has a problem");
  }, 120_000);

  it("release: no URL", async () => {
    declare = () => {
      new SoftwareRelease("bad", { url: "", computerId: "COMP-1" });
    };
    expect(await previewError()).toContain("the software release URL is required");
  }, 120_000);

  it("partition: a bad reference, an address that is not IPv4, a device outside /dev", async () => {
    declare = () => {
      new Partition("bad", {
        computerId: "COMP-1",
        reference: "slap part",
        routableIpv4: "10.0.0.300",
        blockDevice: "sdb",
      });
    };
    const message = await previewError();
    expect(message).toContain(
      "property reference value {slap part} has a problem: a partition reference is 1-64 letters",
    );
    expect(message).toContain("(e.g. slappart3, see the Computer's partitions)");
    expect(message).toContain("routableIpv4 must be an IPv4 address in dotted form");
    expect(message).toContain("blockDevice must be an absolute path under /dev/");
  }, 120_000);

  it("a valid program previews with every resource to create", async () => {
    declare = () => {
      const computer = new Computer("good", {
        ssh: { host: "203.0.113.7", hostKey: HOST_KEY },
        partitionCount: 2,
        allocationScope: "open",
      });
      new SoftwareInstance("good", {
        title: "good",
        softwareRelease: "https://example.org/software.cfg",
        parameters: { port: 8080, debug: true },
        sla: { computer_guid: computer.computerId },
      });
    };
    const preview = await stack.preview();
    expect(preview.changeSummary).toEqual({ create: 3 });
  }, 120_000);
});

it("customTimeouts: Go durations as seconds; anything else refused with an example", () => {
  expect(timeoutsOf({ create: "90s", update: "1h30m", delete: "1.5m" })).toEqual({
    create: 90,
    update: 5400,
    delete: 90,
  });
  expect(timeoutsOf(undefined)).toEqual({ create: undefined, update: undefined, delete: undefined });
  expect(() => timeoutsOf({ create: "10 minutes" })).toThrow(
    `customTimeouts: '10 minutes' is not a duration like "90s", "10m" or "1h30m"`,
  );
});
