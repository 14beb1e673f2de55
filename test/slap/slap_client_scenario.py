"""Drives our master with the real slapos.core `slap` library, as nodes, clients and buildout
recipes do, and prints what the library saw as JSON for the TypeScript test to check."""
import json
import sys

import slapos.slap
from slapos.util import dumps

master_url, release, computer_id = sys.argv[1:4]
seen = {}


def partitions_now():
    """A fresh Computer: the library reads the master once per Computer object."""
    return slap.registerComputer(computer_id).getComputerPartitionList()


slap = slapos.slap.slap()
slap.initializeConnection(master_url)

# The node registers its layout, as `slapos node format` does.
computer = slap.registerComputer(computer_id)
layout = {
    "reference": computer_id,
    "address": "10.0.0.1",
    "netmask": "255.255.255.0",
    "partition_list": [
        {
            "reference": "slappart%d" % index,
            "tap": {"name": "slaptap%d" % index},
            "address_list": [
                {"addr": "10.0.0.%d" % (10 + index), "netmask": "255.255.255.0"},
                {"addr": "fd00::%d" % (10 + index), "netmask": "64"},
            ],
        }
        for index in range(3)
    ],
}
seen["format"] = computer.updateConfiguration(dumps(layout))

# A person supplies and requests.
slap.registerSupply().supply(release, computer_guid=computer_id)
order = slap.registerOpenOrder()
root = order.request(release, "root", partition_parameter_kw={"name": "blog", "port": 8080},
                     filter_kw={"computer_guid": computer_id})
seen["root"] = {
    "id": root.getId(),
    "guid": root.getInstanceGuid(),
    "state": root.getState(),
    "parameters": root.getInstanceParameterDict(),
}

# The node sees its supplies and partitions.
seen["software"] = [(release.getURI(), release.getState()) for release in computer.getSoftwareReleaseList()]
partitions = {partition.getId(): partition for partition in computer.getComputerPartitionList()}
busy = partitions[root.getId()]
seen["partition"] = {
    "state": busy.getState(),
    "parameters": {key: value for key, value in busy.getInstanceParameterDict().items()
                   if key not in ("timestamp",)},
    "free": sorted(pid for pid, partition in partitions.items() if partition.getState() == "destroyed"),
}

# The instance (from its buildout) publishes, requests a child and a shared instance.
instance = slap.registerComputerPartition(computer_id, root.getId())
instance.setConnectionDict({"url": "http://[fd00::10]:8080/", "note": "a&b<c>"})
child = instance.request(release, "db", "database", partition_parameter_kw={"size": "1G"})
frontend = instance.request(release, "default", "my-site", shared=True,
                            partition_parameter_kw={"domain": "example.test"})
seen["child"] = {"id": child.getId(), "guid": child.getInstanceGuid()}
seen["shared"] = {"host": frontend.getId()}

# The requester reads published parameters back.
again = order.request(release, "root", partition_parameter_kw={"name": "blog", "port": 8080},
                      filter_kw={"computer_guid": computer_id})
seen["connection"] = again.getConnectionParameterDict()
seen["same_guid"] = again.getInstanceGuid() == root.getInstanceGuid()

# The host sees the shared instance and publishes for it.
host = [p for p in partitions_now() if p.getId() == root.getId()][0]
shared_list = host.getInstanceParameterDict()["slave_instance_list"]
seen["slave_instance_list"] = [{k: v for k, v in entry.items() if k != "slave_reference"} for entry in shared_list]
instance.setConnectionDict({"site-url": "https://example.test/"}, slave_reference=shared_list[0]["slave_reference"])
shared_again = instance.request(release, "default", "my-site", shared=True,
                                partition_parameter_kw={"domain": "example.test"})
seen["shared_connection"] = shared_again.getConnectionParameterDict()

# States, bang, then destruction of the whole tree through the node's reports.
slap.registerComputerPartition(computer_id, root.getId()).started()
slap.registerComputerPartition(computer_id, child.getId()).started()
instance.bang("something broke")
order.request(release, "root", state="destroyed", filter_kw={"computer_guid": computer_id})
states = {p.getId(): p.getState() for p in partitions_now()}
seen["destroy_requested"] = {"root": states[root.getId()], "child": states[child.getId()]}
for partition_id in (root.getId(), child.getId(), root.getId()):
    slap.registerComputerPartition(computer_id, partition_id).destroyed()
seen["after_destroy"] = sorted(p.getId() for p in partitions_now() if p.getState() == "destroyed")

try:
    order.request(release, "nowhere", filter_kw={"computer_guid": "COMP-NOPE"})
    seen["bad_sla"] = "accepted"
except Exception as error:  # the library's own exception types
    seen["bad_sla"] = type(error).__name__

json.dump(seen, sys.stdout, default=lambda value: value.decode() if isinstance(value, bytes) else str(value))
