"""One sequence of SLAP calls through the real slap library, recorded so that two masters
(slapproxy and ours) can be compared. Ids and timestamps are left out: they differ by design."""
import json
import sys

import slapos.slap
from slapos.util import dumps

master_url, release, computer_id = sys.argv[1:4]
slap = slapos.slap.slap()
slap.initializeConnection(master_url)
steps = {}
IGNORED = {"timestamp", "slave_reference", "_instance_guid"}


def clean(value):
    if isinstance(value, dict):
        return {key: clean(item) for key, item in sorted(value.items()) if key not in IGNORED}
    if isinstance(value, (list, tuple)):
        return [clean(item) for item in value]
    if isinstance(value, bytes):
        return value.decode()
    return value


def step(name, call):
    try:
        steps[name] = {"ok": clean(call())}
    except Exception as error:
        steps[name] = {"error": type(error).__name__}


def node_view():
    computer = slap.registerComputer(computer_id)
    return {
        "software": [(software.getURI(), software.getState()) for software in computer.getSoftwareReleaseList()],
        "partitions": {
            partition.getId(): {
                "state": partition.getState(),
                "parameters": getattr(partition, "_parameter_dict", None),
                "connection": getattr(partition, "_connection_dict", None),
                "release": partition.getSoftwareRelease().getURI() if getattr(partition, "_software_release_document", None) else None,
            }
            for partition in computer.getComputerPartitionList()
        },
    }


def response(instance):
    return {key: value for key, value in instance.__dict__.items() if not key.startswith("_connection_helper") and key != "_hateoas_navigator"}


layout = {"reference": computer_id, "address": "10.0.0.1", "netmask": "255.255.255.0", "partition_list": [
    {"reference": "slappart%d" % index, "tap": {"name": "slaptap%d" % index},
     "address_list": [{"addr": "10.0.0.%d" % (10 + index), "netmask": "255.255.255.0"}]} for index in range(2)]}
step("format", lambda: slap.registerComputer(computer_id).updateConfiguration(dumps(layout)))
step("supply", lambda: slap.registerSupply().supply(release, computer_guid=computer_id))
order = slap.registerOpenOrder()
step("request_root", lambda: response(order.request(release, "root", partition_parameter_kw={"a": "1"},
                                                     filter_kw={"computer_guid": computer_id})))
step("view_after_request", node_view)
instance = slap.registerComputerPartition(computer_id, "slappart0")
step("publish", lambda: instance.setConnectionDict({"url": "http://x/?a=1&b=<2>"}))
step("request_child", lambda: response(instance.request(release, "default", "child", partition_parameter_kw={"b": "2"})))
step("request_shared", lambda: response(instance.request(release, "default", "shared-one", shared=True,
                                                            partition_parameter_kw={"c": "3"})))
step("rerequest_root", lambda: response(order.request(release, "root", partition_parameter_kw={"a": "1"},
                                                       filter_kw={"computer_guid": computer_id})))
step("view_with_children", node_view)
step("no_room", lambda: response(order.request(release, "third", filter_kw={"computer_guid": computer_id})))
step("unknown_computer", lambda: slap.registerComputer("COMP-UNKNOWN").getComputerPartitionList())
step("started", lambda: slap.registerComputerPartition(computer_id, "slappart0").started())
step("destroy_root", lambda: response(order.request(release, "root", state="destroyed",
                                                     filter_kw={"computer_guid": computer_id})))
step("view_destroy_requested", node_view)
for index, partition_id in enumerate(("slappart1", "slappart0")):
    step("destroyed_%d" % index, lambda partition_id=partition_id: slap.registerComputerPartition(computer_id, partition_id).destroyed())
step("view_after_destruction", node_view)
json.dump(steps, sys.stdout, indent=1, default=str)
