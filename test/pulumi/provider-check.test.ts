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

  it("computer: an unpinned host key, no partitions, a negative price, a user without sudo", async () => {
    declare = () => {
      new Computer("bad", {
        ssh: { host: "203.0.113.7", hostKey: "ssh-ed25519 AAAA", user: "deploy", sudo: false },
        partitionCount: 0,
        pricePerHour: -1,
      });
    };
    const message = await previewError();
    expect(message).toContain("ssh.hostKey");
    expect(message).toContain("host keys are pinned, never trusted blindly");
    expect(message).toContain("partitionCount must be an integer from 1 to 1000");
    expect(message).toContain("pricePerHour must be a number >= 0");
    expect(message).toContain("'deploy' must run commands through password-less sudo");
  }, 120_000);

  it("instance: an empty title, a destroyed state, a parameter that is not a string", async () => {
    declare = () => {
      new SoftwareInstance("bad", {
        title: " ",
        softwareRelease: "https://example.org/software.cfg",
        state: "destroyed" as "stopped",
        parameters: { nested: { a: 1 } as unknown as string },
      });
    };
    const message = await previewError();
    expect(message).toContain("an instance needs a non-empty title");
    expect(message).toContain('state must be "started" or "stopped", not "destroyed"');
    expect(message).toContain("parameters.nested must be a string, a number or a boolean");
  }, 120_000);

  it("release: no URL", async () => {
    declare = () => {
      new SoftwareRelease("bad", { url: "", computerId: "COMP-1" });
    };
    expect(await previewError()).toContain("the software release URL is required");
  }, 120_000);

  it("partition: an address that is not IPv4, a device outside /dev", async () => {
    declare = () => {
      new Partition("bad", {
        computerId: "COMP-1",
        reference: "slappart0",
        routableIpv4: "10.0.0.300",
        blockDevice: "sdb",
      });
    };
    const message = await previewError();
    expect(message).toContain("'10.0.0.300' is not an IPv4 address");
    expect(message).toContain("'sdb' is not a device path under /dev/");
  }, 120_000);

  it("a valid program previews with every resource to create", async () => {
    declare = () => {
      const computer = new Computer("good", {
        ssh: { host: "203.0.113.7", hostKey: HOST_KEY },
        partitionCount: 2,
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
