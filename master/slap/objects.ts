import { dictToInstanceXml } from "../../protocol/instance-xml.js";
import { type Marshallable, PyObject, PyTuple } from "../../protocol/xml-marshaller.js";
import type { DesiredState } from "../model/desired-state.js";
import type { InstanceView } from "../model/instances.js";

// The four slapos.slap.slap classes as the SLAP API sends them (reference section 2.3), built
// from the same model the JSON API serves.

type Partition = DesiredState["partitions"][number];

function softwareRelease(url: string, computerId: string, requestedState?: string): PyObject {
  return new PyObject("SoftwareRelease", [url, computerId], {
    _computer_guid: computerId,
    ...(requestedState ? { _requested_state: requestedState } : {}),
    _software_instance_list: [],
    _software_release: url,
  });
}

function ipList(partition: Pick<Partition, "addresses" | "reference" | "tap">): PyTuple[] {
  return partition.addresses.map(
    (address) => new PyTuple([address.interface || partition.tap || partition.reference, address.address]),
  );
}

/** A partition as nodes and instance recipes read it; free ones are `destroyed` with no release. */
export function computerPartition(computerId: string, partition: Partition): PyObject {
  const instance = partition.instance;
  const base = {
    _computer_id: computerId,
    _partition_id: partition.reference,
    _request_dict: null,
  };
  if (!instance) {
    return new PyObject("ComputerPartition", [computerId, partition.reference, null], {
      ...base,
      _instance_guid: `${computerId}-${partition.reference}`,
      _need_modification: 0,
      _requested_state: "destroyed",
      _software_release_document: null,
    });
  }
  const parameters: { [key: string]: Marshallable } = {
    ...instance.parameters,
    full_ip_list: [],
    instance_title: instance.title,
    ip_list: ipList(partition),
    root_instance_title: instance.rootTitle,
    slap_computer_id: computerId,
    slap_computer_partition_id: partition.reference,
    slap_software_release_url: instance.softwareReleaseUrl,
    slap_software_type: instance.softwareType,
    slave_instance_list: instance.sharedInstances.map((shared) => ({
      ...shared.parameters,
      slap_software_type: shared.softwareType,
      slave_reference: shared.id,
      slave_title: shared.title,
    })),
    timestamp: String(instance.timestamp),
  };
  return new PyObject("ComputerPartition", [computerId, partition.reference, null], {
    ...base,
    _connection_dict: instance.connectionParameters,
    _instance_guid: instance.id,
    _need_modification: 1,
    _parameter_dict: parameters,
    _requested_state: instance.requestedState,
    _software_release_document: softwareRelease(instance.softwareReleaseUrl, computerId),
  });
}

/** The whole computer: every supplied release and every partition. */
export function computer(state: DesiredState): PyObject {
  return new PyObject("Computer", [state.computerId], {
    _computer_id: state.computerId,
    _computer_partition_list: state.partitions.map((partition) =>
      computerPartition(state.computerId, partition),
    ),
    _software_release_list: state.software.map((software) =>
      softwareRelease(software.url, state.computerId, software.requestedState),
    ),
  });
}

/** The answer to requestComputerPartition: what the requester learns about its instance. */
export function softwareInstance(view: InstanceView): PyObject {
  const state: { [key: string]: Marshallable } = {
    _connection_dict: view.connectionParameters,
    _parameter_dict: { ...view.parameters, timestamp: String(view.timestamp) },
    ip_list: view.partitionReference
      ? ipList({ addresses: view.addresses, reference: view.partitionReference, tap: null })
      : [],
    slap_computer_id: view.computerId,
    slap_computer_partition_id: view.partitionReference,
    slap_software_release_url: view.softwareReleaseUrl,
    slap_software_type: view.softwareType,
  };
  if (!view.shared) {
    state._instance_guid = view.id;
    state._requested_state = view.requestedState;
    // The raw instance XML, as slapproxy sends it next to the parsed dict.
    state.connection_xml =
      Object.keys(view.connectionParameters).length > 0 ? dictToInstanceXml(view.connectionParameters) : null;
  }
  return new PyObject("SoftwareInstance", [], state);
}
