"""The real slap library over HTTPS with client certificates, each call made with the identity
SlapOS would use: the person requests, the node formats and reports, the instance publishes and
requests children with the certificate the node fetched for it."""
import json
import os
import sys

import slapos.slap
from slapos.util import dumps

master_url, release, keys, computer_id, other_computer_id = sys.argv[1:6]
seen = {}


def connect(name):
    slap = slapos.slap.slap()
    if name is None:
        slap.initializeConnection(master_url)
    else:
        slap.initializeConnection(master_url, key_file=os.path.join(keys, name + ".key"),
                                  cert_file=os.path.join(keys, name + ".crt"))
    return slap


def outcome(call):
    try:
        call()
        return "accepted"
    except Exception as error:
        return type(error).__name__ + ": " + str(error)[:120]


person, node, other_node = connect("person"), connect("computer"), connect("other-computer")
layout = {"reference": computer_id, "address": "10.0.0.1", "netmask": "255.255.255.0", "partition_list": [
    {"reference": "slappart%d" % index, "tap": {"name": "slaptap%d" % index},
     "address_list": [{"addr": "fd00::%d" % (10 + index), "netmask": "64"}]} for index in range(2)]}
seen["format"] = node.registerComputer(computer_id).updateConfiguration(dumps(layout)).decode()
seen["format_other_computer"] = outcome(
    lambda: other_node.registerComputer(computer_id).updateConfiguration(dumps(layout)))

person.registerSupply().supply(release, computer_guid=computer_id)
root = person.registerOpenOrder().request(release, "root", filter_kw={"computer_guid": computer_id})
seen["root"] = root.getId()

seen["other_computer_reads"] = outcome(lambda: other_node.registerComputer(computer_id).getComputerPartitionList())
seen["anonymous_reads"] = outcome(lambda: connect(None).registerComputer(computer_id).getComputerPartitionList())

credentials = node.registerComputerPartition(computer_id, root.getId()).getCertificate()
for kind in ("certificate", "key"):
    with open(os.path.join(keys, "instance." + ("crt" if kind == "certificate" else "key")), "w") as file:
        file.write(credentials[kind])
instance = connect("instance").registerComputerPartition(computer_id, root.getId())
instance.setConnectionDict({"url": "https://[fd00::10]/"})
child = instance.request(release, "default", "child")
seen["child"] = child.getId()
seen["connection"] = person.registerOpenOrder().request(
    release, "root", filter_kw={"computer_guid": computer_id}).getConnectionParameterDict()
seen["instance_as_node"] = outcome(lambda: connect("instance").registerComputerPartition(
    computer_id, child.getId()).setConnectionDict({"x": "y"}))
node.registerComputerPartition(computer_id, root.getId()).started()
json.dump(seen, sys.stdout)
