import { afterAll, beforeAll, expect, it } from "vitest";
import type { MasterSettings } from "../../provider/master.js";
import { type ComputerOutputs, ComputerProvider } from "../../provider/providers/computer.js";
import { type HttpsMaster, startHttpsMaster } from "../master/https-master.js";
import { testDatabaseKinds } from "../support/databases.js";
import { describeWith } from "../support/requirements.js";

// The Computer resource's allocation scope without a host: its preview check, and its refresh
// against a real master (creating and updating a computer bootstrap a host over SSH; the
// end-to-end provider test covers those).

const HOST_KEY = `SHA256:${"A".repeat(43)}`;

it("refuses an unknown allocation scope in the preview, naming the input", async () => {
  const provider = new ComputerProvider({});
  const inputs = { ssh: { host: "203.0.113.7", hostKey: HOST_KEY }, partitionCount: 1 };
  const refused = await provider.check(inputs, { ...inputs, allocationScope: "public" as never });
  expect(refused.failures).toEqual([
    expect.objectContaining({ property: "allocationScope", reason: expect.stringContaining("open") }),
  ]);
  for (const allocationScope of ["personal", "organisation", "open"] as const)
    expect((await provider.check(inputs, { ...inputs, allocationScope })).failures).toEqual([]);
});

for (const kind of testDatabaseKinds) {
  describeWith(
    kind.requirements,
    `the Computer resource's allocation scope on refresh, on ${kind.name}`,
    () => {
      let master: HttpsMaster;
      let settings: MasterSettings;
      let computerId: string;
      const provider = new ComputerProvider({});

      const refreshed = async (allocationScope?: ComputerOutputs["allocationScope"]) => {
        const props = {
          ssh: { host: "203.0.113.7", hostKey: HOST_KEY },
          partitionCount: 1,
          master: settings,
          computerId,
          hostKey: HOST_KEY,
          agentVersion: "0",
          partitions: [],
          ...(allocationScope ? { allocationScope } : {}),
        } satisfies ComputerOutputs;
        const read = await provider.read(computerId, props);
        return { props: read.props?.allocationScope, inputs: read.inputs?.allocationScope };
      };

      beforeAll(async () => {
        master = await startHttpsMaster(kind);
        const { url, ca, certificate, key } = master.admin.connection;
        settings = { url, caCertificate: ca, certificate, privateKey: key };
        computerId = (await master.node(master.admin, ["slappart0"])).id;
      });
      afterAll(async () => {
        await master?.close();
      });

      it("shows no drift while the master holds what the program says (absent: personal)", async () => {
        expect(await refreshed()).toEqual({ props: undefined, inputs: undefined });
        await master.admin.updateComputer(computerId, { allocationScope: "organisation" });
        expect(await refreshed("organisation")).toEqual({ props: "organisation", inputs: "organisation" });
      });

      it("shows a computer opened behind Pulumi's back as drift, so the next update closes it", async () => {
        await master.admin.updateComputer(computerId, { allocationScope: "open" });
        expect(await refreshed()).toEqual({ props: "open", inputs: "open" });
        expect(await refreshed("organisation")).toEqual({ props: "open", inputs: "open" });
      });
    },
  );
}
