"""A local Ray cluster of simulated nodes for tests: `python -m colocate_ray.testing NODES DEVICES`.

Starts a head node that offers nothing to colocate (so every bundle lands on a simulated node) and
NODES nodes with DEVICES virtual CPU devices each (`colocate_cpu_device`), CPUs and object-store
memory pinned small. Prints one JSON line {"address": ..., "nodes": [node ids]} when ready, then
obeys commands on stdin, one a line, answering one JSON line each:

    remove I      remove simulated node I (its raylet and every worker on it die)
    add I         start simulated node I again (after a remove)
    quit          shut the cluster down (so does EOF on stdin)
"""

import json
import os
import sys

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from ray.cluster_utils import Cluster  # noqa: E402

OBJECT_STORE = 80 * 1024 * 1024


def node_args(devices, index):
    return dict(num_cpus=1, num_gpus=0, object_store_memory=OBJECT_STORE,
                resources={"colocate_cpu_device": devices, f"colocate_test_node_{index}": 1})


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    devices = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # Ray's chatter goes to stderr; stdout is the protocol
    cluster = Cluster(initialize_head=True, head_node_args=dict(
        num_cpus=0, num_gpus=0, object_store_memory=OBJECT_STORE, include_dashboard=False))
    nodes = [cluster.add_node(**node_args(devices, i)) for i in range(count)]
    cluster.wait_for_nodes()

    def say(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    say({"address": cluster.address, "nodes": [n.node_id for n in nodes]})
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        try:
            if words[0] == "remove":
                i = int(words[1])
                cluster.remove_node(nodes[i], allow_graceful=False)
                say({"ok": True, "removed": i})
            elif words[0] == "add":
                i = int(words[1])
                nodes[i] = cluster.add_node(**node_args(devices, i))
                cluster.wait_for_nodes()
                say({"ok": True, "nodes": [n.node_id for n in nodes]})
            elif words[0] == "quit":
                break
            else:
                say({"ok": False, "error": f"unknown command {words[0]!r}"})
        except Exception as e:  # noqa: BLE001
            say({"ok": False, "error": str(e)})
    cluster.shutdown()
    say({"ok": True, "quit": True})


if __name__ == "__main__":
    main()
