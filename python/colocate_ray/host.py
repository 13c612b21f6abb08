"""The hosting actor: one thin Ray actor per colocate worker.

Ray places the actor (a bundle of a placement group, a share of its GPU or of its virtual CPU device)
and watches its life; the actor starts `colocate worker` on that device and otherwise stays out of the
way. The worker dials the driver over TCP itself, authenticated by the cluster secret.

Lifetime: the worker stays in this actor's process group and is started from a thread of this process
that lives exactly as long as the worker, so the worker's parent-death signal (set by `colocate worker`
as its first act, PR_SET_PDEATHSIG is per parent *thread*) fires when this process dies for any reason:
`ray.kill`, the removal of its placement group or node, or the end of the driver that owns it. The
worker also checks at start-up that its parent is still this process (COLOCATE_DRIVER_PID).
"""

import ctypes
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading

import ray

# The custom resource that counts virtual CPU devices on a node (`ray start --resources`).
CPU_DEVICE_RESOURCE = "colocate_cpu_device"


def virtual_cpu_device_uuid(node_id: str, ordinal: int) -> str:
    """A stable UUID for virtual CPU device `ordinal` of Ray node `node_id`, printed like nvidia-smi's."""
    digest = hashlib.sha256(f"colocate-ray-virtual-cpu-device/{node_id}/{ordinal}".encode()).hexdigest()[:32]
    return "CPU-" + "-".join([digest[0:8], digest[8:12], digest[12:16], digest[16:20], digest[20:32]])


def _cuda_uuid_of_visible_device():
    """The UUID of CUDA device 0 as this process sees it (Ray set CUDA_VISIBLE_DEVICES): asked of
    CUDA itself, so that Ray ids, CUDA ordinals and nvidia-smi indices never have to agree."""
    cuda = ctypes.CDLL("libcuda.so.1")
    if cuda.cuInit(0) != 0:
        raise RuntimeError("cuInit failed")
    device = ctypes.c_int()
    if cuda.cuDeviceGet(ctypes.byref(device), 0) != 0:
        raise RuntimeError("cuDeviceGet(0) failed: no visible CUDA device")
    raw = (ctypes.c_ubyte * 16)()
    get_uuid = getattr(cuda, "cuDeviceGetUuid_v2", None) or cuda.cuDeviceGetUuid
    if get_uuid(raw, device) != 0:
        raise RuntimeError("cuDeviceGetUuid failed")
    total = ctypes.c_size_t()
    cuda.cuDeviceTotalMem_v2(ctypes.byref(total), device)
    h = bytes(raw).hex()
    return "GPU-" + "-".join([h[0:8], h[8:12], h[12:16], h[16:20], h[20:32]]), total.value


def _gpu_by_ray_id(ray_id: str):
    """(uuid, bytes) of the GPU Ray assigned. Ray's id is an entry of the raylet's
    CUDA_VISIBLE_DEVICES: a UUID already, or an index. Prefer CUDA's own answer; fall back to
    nvidia-smi by index only when libcuda is unusable (correct when the raylet runs with
    CUDA_DEVICE_ORDER=PCI_BUS_ID, nvidia-smi's order)."""
    try:
        return _cuda_uuid_of_visible_device()
    except (OSError, RuntimeError):
        pass
    out = subprocess.run(["nvidia-smi", "--query-gpu=index,uuid,memory.total", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        index, uuid, mib = [f.strip() for f in line.split(",")]
        if ray_id in (index, uuid):
            return uuid, int(mib) << 20
    raise RuntimeError(f"Ray assigned GPU {ray_id!r}, which nvidia-smi does not list")


@ray.remote(num_cpus=0, max_concurrency=4)
class WorkerHost:
    """Hosts one `colocate worker`. `spec` (from the driver helper):
    executable, arguments, env (COLOCATE_* including the secret), device_kind ("cuda"/"cpu"/None),
    fraction, cpu_ordinal and cpu_devices_on_node (virtual CPU devices)."""

    def __init__(self, spec):
        self.spec = spec
        self.child = None
        self.exited = threading.Event()
        self.status = None
        self.directory = tempfile.mkdtemp(prefix="colocate-ray-")  # 0700, for the worker's Unix socket
        self.log_path = os.path.join(self.directory, "worker.log")

    def _device(self):
        kind = self.spec.get("device_kind")
        if kind == "cuda":
            ids = ray.get_runtime_context().get_accelerator_ids().get("GPU", [])
            if len(ids) != 1:
                raise RuntimeError(f"the hosting actor expected one GPU from Ray, got {ids}")
            uuid, capacity = _gpu_by_ray_id(str(ids[0]))
            return {"kind": "cuda", "ordinal": 0, "uuid": uuid, "capacity": capacity}
        if kind == "cpu":
            node_id = ray.get_runtime_context().get_node_id()
            per_node = max(1, int(self.spec["cpu_devices_on_node"]))
            physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            capacity = physical // per_node // (1 << 20) * (1 << 20)
            if self.spec.get("cpu_capacity"):
                capacity = int(self.spec["cpu_capacity"])
            ordinal = int(self.spec["cpu_ordinal"])
            return {"kind": "cpu", "ordinal": ordinal, "uuid": virtual_cpu_device_uuid(node_id, ordinal),
                    "capacity": capacity}
        return None

    def start(self):
        """Starts the worker; returns where it runs. The worker dials the driver on its own."""
        device = self._device()
        env = dict(os.environ)
        env.update(self.spec["env"])
        env["COLOCATE_DRIVER_PID"] = str(os.getpid())  # the worker's parent: this actor
        env["COLOCATE_SOCKET_DIR"] = self.directory
        env["COLOCATE_ADVERTISE_HOST"] = ray.util.get_node_ip_address()  # for peers on other hosts
        env["COLOCATE_HOST_ID"] = "ray-node:" + ray.get_runtime_context().get_node_id()
        if device is not None:
            env["COLOCATE_DEVICE"] = json.dumps(device)
            env["COLOCATE_DEVICE_FRACTION"] = str(self.spec["fraction"])
            if device["kind"] == "cuda":
                env["CUDA_VISIBLE_DEVICES"] = device["uuid"]  # by UUID, never by index
        else:
            env.pop("COLOCATE_DEVICE", None)
            if self.spec.get("cluster_kind") == "cuda":
                env["CUDA_VISIBLE_DEVICES"] = ""  # an actor without a device sees no GPU, as locally
        started = threading.Event()
        failure = []

        def run():
            # This thread forks the worker and lives until it exits: see the module's note on
            # PR_SET_PDEATHSIG. No new session: the worker stays in this actor's process group.
            try:
                with open(self.log_path, "wb") as log:
                    self.child = subprocess.Popen([self.spec["executable"]] + self.spec["arguments"], env=env,
                                                  stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                                  close_fds=True)
            except OSError as e:
                failure.append(f"cannot start {self.spec['executable']}: {e}")
                self.status = {"code": 127, "signal": None}
                self.exited.set()
                started.set()
                return
            started.set()
            code = self.child.wait()
            self.status = {"code": code, "signal": None} if code >= 0 else {"code": None, "signal": -code}
            self.exited.set()

        threading.Thread(target=run, name="colocate-worker", daemon=True).start()
        started.wait()
        if failure:
            raise RuntimeError(failure[0])
        return {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address(),
                "hostname": os.uname().nodename, "host_pid": os.getpid(), "pid": self.child.pid, "device": device}

    def wait_child(self):
        """Returns when the worker has exited: its status and the end of its output."""
        self.exited.wait()
        tail = ""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 2000))
                tail = f.read().decode(errors="replace")
        except OSError:
            pass
        shutil.rmtree(self.directory, ignore_errors=True)
        return dict(self.status or {}, output=tail)

    def kill_child(self):
        """SIGKILL to the worker (only to it: the group is this actor's own)."""
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGKILL)
        return True

    def pids(self):
        return {"host_pid": os.getpid(), "pid": self.child.pid if self.child else None}
