"""The driver helper: the Swift driver runs `python -m colocate_ray.driver` and speaks JSON lines to it.

Ray has no Swift API, so this process is the Swift driver's hands in Ray: it creates and removes
placement groups, creates the hosting actors (`host.WorkerHost`), and reports their deaths. It never
sees a frame of the control plane: workers dial the Swift driver directly over TCP.

Requests on stdin, one JSON object a line, each with an "id"; a reply on stdout carries the same id
with "ok": true and fields, or "ok": false and "error". Events have no id:
{"event": "died", "actor": ID, "reason": "...", "code": C, "signal": S, "output": "..."}.

    {"id":1,"op":"connect","address":"auto"|"local:NODES"|HOST:PORT}  -> resources, node_ip, nodes
    {"id":2,"op":"create_pg","name":N,"bundles":[{...}],"strategy":"PACK","timeout":S}
                                                    -> pg, bundle_nodes, cpu_ordinals   (or Ray's reason)
    {"id":3,"op":"remove_pg","pg":N}
    {"id":4,"op":"spawn","actor":ID,"pg":N|null,"bundle":I,"fraction":F,"device_kind":K,"spec":{...}}
                                                    -> node_id, node_ip, pid, host_pid, device
    {"id":5,"op":"kill","actor":ID}                 (ray.kill of the hosting actor)
    {"id":6,"op":"nodes"}                           -> nodes
    {"id":7,"op":"shutdown"}

This process exits when its stdin ends (the Swift driver died or closed it), and then Ray ends the
actors and placement groups it owns: they share the fate of their creator.
"""

import json
import os
import socket
import sys
import threading
import time

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from colocate_ray.host import CPU_DEVICE_RESOURCE, WorkerHost

_out = sys.stdout
_out_lock = threading.Lock()


def emit(obj):
    line = json.dumps(obj)
    with _out_lock:
        _out.write(line + "\n")
        _out.flush()


class Driver:
    def __init__(self):
        self.groups = {}        # name -> (pg, bundles, cpu ordinals {bundle: ordinal}, nodes per bundle)
        self.actors = {}        # actor id -> handle
        self.cpu_in_use = {}    # node id -> set of virtual CPU device ordinals held by our groups
        self.lock = threading.Lock()

    # MARK: Requests

    def connect(self, req):
        address = req.get("address") or "auto"
        _check_reachable(address)
        kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        ray.init(address=address, namespace=req.get("namespace"), **kwargs)
        return {"resources": ray.cluster_resources(), "node_ip": ray.util.get_node_ip_address(),
                "nodes": self._nodes()}

    def _nodes(self):
        return [{"node_id": n["NodeID"], "ip": n["NodeManagerAddress"], "alive": n["Alive"],
                 "resources": n.get("Resources", {})} for n in ray.nodes()]

    def create_pg(self, req):
        name = req["name"]
        bundles = req["bundles"]
        timeout = float(req.get("timeout", 60))
        pg = placement_group(bundles, strategy=req["strategy"], name=name)
        ready, _ = ray.wait([pg.ready()], timeout=timeout)
        if not ready:
            reason = self._pending_reason(pg, bundles, req["strategy"], timeout)
            remove_placement_group(pg)
            raise RuntimeError(reason)
        table = ray.util.placement_group_table(pg)
        nodes = [table["bundles_to_node_id"][i] for i in range(len(bundles))]
        ordinals = {}
        with self.lock:
            per_node = {n["node_id"]: int(n["resources"].get(CPU_DEVICE_RESOURCE, 0)) for n in self._nodes()}
            for i, b in enumerate(bundles):
                if b.get(CPU_DEVICE_RESOURCE, 0) > 0:
                    used = self.cpu_in_use.setdefault(nodes[i], set())
                    free = [o for o in range(per_node.get(nodes[i], 0)) if o not in used]
                    if not free:  # Ray reserved it, so only another driver can hold the others
                        raise RuntimeError(f"no free virtual CPU device on node {nodes[i]} for bundle {i}")
                    used.add(free[0])
                    ordinals[i] = free[0]
            self.groups[name] = (pg, bundles, ordinals, nodes)
        return {"pg": name, "bundle_nodes": nodes, "cpu_ordinals": {str(k): v for k, v in ordinals.items()},
                "cpu_devices_on_node": {n: per_node.get(n, 0) for n in set(nodes)}}

    def _pending_reason(self, pg, bundles, strategy, timeout):
        state = "PENDING"
        try:
            table = ray.util.placement_group_table(pg)
            state = table.get("state", state)
            stats = table.get("stats") or {}
            sched = stats.get("scheduling_state")
            if sched:
                state += f", scheduling state {sched}"
        except Exception:  # noqa: BLE001 - the reason is best effort; the timeout is the error
            pass
        nodes = [n for n in self._nodes() if n["alive"]]
        per_node = "; ".join(
            f"{n['ip']} ({n['node_id'][:8]}): " + ", ".join(f"{k} {v:g}" for k, v in sorted(n["resources"].items())
                                                           if k in ("GPU", "CPU", CPU_DEVICE_RESOURCE))
            for n in nodes)
        return (f"Ray could not place the group's {len(bundles)} bundles {bundles} with {strategy} within "
                f"{timeout:g} s (state {state}); the cluster's {len(nodes)} alive node(s) offer: {per_node}")

    def remove_pg(self, req):
        with self.lock:
            entry = self.groups.pop(req["pg"], None)
            if entry:
                _, _, ordinals, nodes = entry
                for i, o in ordinals.items():
                    self.cpu_in_use.get(nodes[i], set()).discard(o)
        if entry:
            remove_placement_group(entry[0])
        return {}

    def spawn(self, req):
        actor_id = req["actor"]
        spec = dict(req["spec"])
        options = {"name": None, "lifetime": None, "max_restarts": 0}
        fraction = float(req.get("fraction") or 0)
        kind = req.get("device_kind")
        if req.get("pg") is not None:
            with self.lock:
                pg, bundles, ordinals, nodes = self.groups[req["pg"]]
            bundle = int(req["bundle"])
            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                placement_group=pg, placement_group_bundle_index=bundle)
            if fraction > 0 and kind == "cuda":
                options["num_gpus"] = fraction
            elif fraction > 0 and kind == "cpu":
                options["resources"] = {CPU_DEVICE_RESOURCE: fraction}
                spec["cpu_ordinal"] = ordinals[bundle]
                spec["cpu_devices_on_node"] = int(next(n["resources"].get(CPU_DEVICE_RESOURCE, 1)
                                                       for n in self._nodes() if n["node_id"] == nodes[bundle]))
        spec["device_kind"] = kind if fraction > 0 else None
        spec["cluster_kind"] = kind
        spec["fraction"] = fraction
        host = WorkerHost.options(**options).remote(spec)
        with self.lock:
            self.actors[actor_id] = host
        try:
            info = ray.get(host.start.remote(), timeout=float(req.get("timeout", 60)))
        except Exception:
            with self.lock:
                self.actors.pop(actor_id, None)
            ray.kill(host)
            raise
        threading.Thread(target=self._watch, args=(actor_id, host), daemon=True).start()
        return info

    def _watch(self, actor_id, host):
        event = {"event": "died", "actor": actor_id}
        try:
            status = ray.get(host.wait_child.remote())
            event.update(status)
            event["reason"] = "its worker exited"
        except ray.exceptions.RayActorError as e:
            event["reason"] = "its hosting Ray actor died: " + _first_line(e)
        except Exception as e:  # noqa: BLE001
            event["reason"] = "its hosting Ray actor is unreachable: " + _first_line(e)
        with self.lock:
            self.actors.pop(actor_id, None)
        emit(event)
        # The actor outlives its worker otherwise; it holds a share of its bundle.
        try:
            ray.kill(host)
        except Exception:  # noqa: BLE001
            pass

    def kill(self, req):
        with self.lock:
            host = self.actors.get(req["actor"])
        if host is not None:
            ray.kill(host, no_restart=True)
        return {}

    def stop_worker(self, req):
        with self.lock:
            host = self.actors.get(req["actor"])
        if host is not None:
            try:
                ray.get(host.kill_child.remote(), timeout=5)
            except Exception:  # noqa: BLE001
                ray.kill(host, no_restart=True)
        return {}

    def nodes(self, req):
        return {"nodes": self._nodes()}

    # MARK: Loop

    def handle(self, req):
        op = req.get("op")
        try:
            fn = {"connect": self.connect, "create_pg": self.create_pg, "remove_pg": self.remove_pg,
                  "spawn": self.spawn, "kill": self.kill, "stop_worker": self.stop_worker,
                  "nodes": self.nodes}.get(op)
            if fn is None:
                raise ValueError(f"unknown op {op!r}")
            reply = fn(req)
            emit(dict(reply, id=req.get("id"), ok=True))
        except Exception as e:  # noqa: BLE001 - every failure goes back to the Swift driver as text
            emit({"id": req.get("id"), "ok": False, "error": _first_line(e)})


def _check_reachable(address):
    """Fails at once, with a clear reason, when nothing listens at a HOST:PORT address (ray.init
    would retry for minutes)."""
    if address in ("auto", "local") or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except (OSError, ValueError) as e:
        raise RuntimeError(f"no Ray cluster answers at {address} ({e}): is it started (`ray start --head`), "
                           f"and is the address its head's HOST:PORT?") from None


def _first_line(e):
    text = str(e).strip() or type(e).__name__
    lines = [" ".join(l.split()) for l in text.splitlines() if l.strip()]
    return " ".join(lines[:3])[:2000]


def _watch_parent(parent):
    # Belt and braces next to stdin's EOF: a driver that died leaves its helper no reason to live.
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def main():
    # stdout carries the protocol only: anything Ray prints goes to stderr.
    global _out
    _out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    driver = Driver()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
        except ValueError:
            emit({"id": None, "ok": False, "error": "not JSON: " + line[:200]})
            continue
        if req.get("op") == "shutdown":
            for name in list(driver.groups):
                driver.remove_pg({"pg": name})
            emit({"id": req.get("id"), "ok": True})
            break
        if req.get("op") == "connect":
            driver.handle(req)  # before anything else
        else:
            threading.Thread(target=driver.handle, args=(req,), daemon=True).start()
    os._exit(0)


if __name__ == "__main__":
    main()
