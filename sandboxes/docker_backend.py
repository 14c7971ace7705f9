"""`DockerSandbox`: one locked-down container per sandbox, driven through the docker SDK.

The container's main process is `sleep <lifetime>` under Docker's init, run by a "keeper" uid the sandboxed
code cannot signal, so a sandbox ends on its own at its wall-time limit even if its owner dies. Commands go
through the exec agent (agent.py) when it runs, else each is a `docker exec` wrapped in `timeout` (the SDK's
exec has no timeout of its own). After each command the host kills whatever it left running (cgroup sweep).
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sandboxes import quota
from sandboxes.agent import ExecAgent, ExecGate, LineAgent
from sandboxes.base import ExecResult, InvalidSpec, SandboxError, SandboxSpec, inside_path
from sandboxes.cgroups import docker_oom_count, docker_procs_file, kill_pids_in
from sandboxes.engine import LABEL, LABEL_DEADLINE, LABEL_OWNER_BOOT, LABEL_OWNER_PID, LABEL_POOL, LABEL_RUN, boot_id
from sandboxes.execpath import KILL_GRACE_S, MAX_AGENT_FAILURES, GatedSandbox, oom_grew
from sandboxes.outcome import TailBuffer, make_result
from sandboxes.validate import uid_gid
from sandboxes.workspace import grant_workspace

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

log = logging.getLogger(__name__)
LIFETIME_MARGIN_S = 5
"""The container outlives the sandbox's lifetime by this much, so a command running at the end is reported
as timed out by the agent rather than killed by the container's exit."""


def _container_kwargs(spec: SandboxSpec, pool_key: str | None) -> dict:
    uid, _ = uid_gid(spec)
    labels = {LABEL: "1", LABEL_RUN: spec.run_id or "", LABEL_OWNER_PID: str(os.getpid()),
              LABEL_OWNER_BOOT: boot_id(), LABEL_DEADLINE: str(int(time.time() + spec.lifetime_s))}
    if pool_key:
        labels[LABEL_POOL] = pool_key
    volumes = {str(p): {"bind": inside_path(p), "mode": "ro"} for p in spec.host_paths}
    if spec.workspace is not None:
        volumes[str(spec.workspace)] = {"bind": "/work", "mode": "rw"}
    env = {"HOME": "/tmp", **spec.env}
    fsize = spec.max_file_mb << 20
    kwargs = dict(
        command=["sleep", str(int(spec.lifetime_s) + LIFETIME_MARGIN_S)], detach=True, init=True, labels=labels,
        user=_keeper_user(uid), environment=env, working_dir="/work" if spec.workspace else "/tmp",
        read_only=True, tmpfs={"/tmp": f"rw,nosuid,nodev,size={spec.tmpfs_mb}m,mode=1777"},
        cap_drop=["ALL"], security_opt=["no-new-privileges"], network_mode="bridge" if spec.network else "none",
        mem_limit=f"{spec.memory_mb}m", memswap_limit=f"{spec.memory_mb}m", nano_cpus=int(spec.cpus * 1e9),
        pids_limit=spec.pids, volumes=volumes, ipc_mode="private", auto_remove=True,
    )
    from docker.types import DeviceRequest, Ulimit

    kwargs["ulimits"] = [Ulimit(name="fsize", soft=fsize, hard=fsize), Ulimit(name="core", soft=0, hard=0)]
    if spec.gpu:
        kwargs["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return kwargs


def _keeper_user(sandbox_uid: int) -> str:
    """The uid of the container's init and sleep: unprivileged but not the sandbox user, so code in the
    sandbox cannot end its own container with `kill -9 -1`."""
    keeper = 65533 if sandbox_uid != 65533 else 65532
    return f"{keeper}:{keeper}"


def start_container(client: docker.DockerClient, spec: SandboxSpec, pool_key: str | None = None) -> Container:
    """Check the image of a validated `spec` exists and start its container (cold start)."""
    from docker.errors import APIError, ImageNotFound

    try:
        client.images.get(spec.image)
    except ImageNotFound:
        name = spec.image.removeprefix("m3lab/").removesuffix(":latest")
        how = f"m3lab sandbox build --image {name}" if spec.image.startswith("m3lab/") else "m3lab sandbox build"
        raise InvalidSpec(f"unknown image {spec.image!r}: build it with `{how}`") from None
    if spec.workspace is not None:
        grant_workspace(spec.workspace, uid_gid(spec)[0])
    try:
        return client.containers.run(spec.image, **_container_kwargs(spec, pool_key))
    except APIError as exc:
        if spec.gpu and "gpu" in str(exc).lower():
            raise SandboxError(f"GPU requested but the engine cannot provide one (nvidia-container-toolkit?): "
                               f"{exc}") from exc
        raise SandboxError(f"could not start a container of {spec.image}: {exc}") from exc


class DockerSandbox(GatedSandbox):
    """A running container; see `sandboxes.base.Sandbox`. Commands go through the in-container agent when it
    runs (a fork per command), else through `docker exec` (a runc exec per command, ~85 ms)."""

    backend = "docker"

    def __init__(self, spec: SandboxSpec, container: Container, client: docker.DockerClient) -> None:
        self.spec = spec
        self.container = container
        self.client = client
        self.started = time.monotonic()
        self._closed = False
        self._keep = self._keep_pids()
        # Like the process backend (whose pid namespace dies with the command), nothing a command started
        # outlives it: no daemon, no fork bomb left running after `timeout` raced it.
        self._gate = ExecGate(self.kill_strays)
        self._quota = quota.Watcher(spec, self.kill_strays)

    @property
    def id(self) -> str:
        return self.container.id

    def start_agent(self) -> LineAgent | None:
        """Start the exec agent unless it runs or failed too often (e.g. an image without python3)."""
        if self._agent is not None or self._agent_failures >= MAX_AGENT_FAILURES:
            return self._agent
        try:
            agent = ExecAgent(self.client, self.id, self.spec.user)
        except Exception as exc:  # any failure only means the slower docker-exec path
            log.debug("exec agent unavailable in %s: %s", self.id[:12], exc)
            self._agent_failures += 1
            return None
        self._keep.add(agent.host_pid)
        self._agent = agent
        return agent

    def _oom_count(self) -> int | None:
        return docker_oom_count(self.id)

    def _after_agent_death(self) -> None:
        self._check_alive()  # a command that ended the container itself ends the sandbox: say so

    def _run_fallback(self, argv: list[str], env: dict[str, str], workdir: str, timeout: float) -> ExecResult:
        return self._run(["timeout", "-k", str(KILL_GRACE_S), f"{timeout:.3f}", *argv], timeout, env, workdir)

    def _check_alive(self) -> None:
        from docker.errors import NotFound

        try:
            self.container.reload()
        except NotFound:
            raise SandboxError("sandbox container is gone (lifetime over or removed)") from None
        if self.container.status != "running":
            raise SandboxError(f"sandbox container is {self.container.status} (its main process ended)")

    def _run(self, argv: list[str], timeout: float, env: dict[str, str], workdir: str) -> ExecResult:
        from docker.errors import APIError, NotFound

        api = self.client.api
        oom_before = self._oom_count()
        out, err = TailBuffer(), TailBuffer()
        start = time.monotonic()
        try:
            exec_id = api.exec_create(self.id, argv, environment=env, workdir=workdir,
                                      user=self.spec.user)["Id"]
            for chunk_out, chunk_err in api.exec_start(exec_id, stream=True, demux=True):
                out.write(chunk_out or b"")
                err.write(chunk_err or b"")
            code = api.exec_inspect(exec_id)["ExitCode"]
        except NotFound as exc:
            raise SandboxError(f"sandbox container is gone (lifetime over or removed): {exc}") from exc
        except APIError as exc:
            if "is not running" in str(exc):
                raise SandboxError(f"sandbox container is not running (lifetime over?): {exc}") from exc
            # e.g. the pids limit is exhausted so runc cannot even start the exec: an observation, not a crash.
            duration = time.monotonic() - start
            return ExecResult(-1, "", f"[m3lab sandbox] exec could not start: {exc}", duration, "error")
        oom = oom_grew(oom_before, self._oom_count())
        return make_result(code if code is not None else -1, out, err, time.monotonic() - start, timeout, oom)

    def _keep_pids(self) -> set[int]:
        """Host pids of the container's init and its `sleep` (killing those would end the sandbox). Read at
        start, when init's only child is the sleep; init may not have forked it yet, so wait for it."""
        self.container.reload()
        init = int(self.container.attrs["State"]["Pid"])
        children: set[int] = set()
        for _ in range(200):
            try:
                for task in Path(f"/proc/{init}/task").iterdir():
                    children |= {int(c) for c in (task / "children").read_text().split()}
            except OSError:
                break  # not a local engine: kill_strays is a no-op there anyway
            if children:
                break
            time.sleep(0.005)
        return {init, *children}

    def kill_strays(self) -> int:
        """Kill every process of the container but its init, sleep and agent (what finished commands left
        behind). Host-side through the cgroup, so it works even when the pids limit leaves no room for an exec;
        0 where the engine is not local."""
        procs = docker_procs_file(self.id)
        if procs is None:
            return 0
        return kill_pids_in(procs, self._keep)

    def _release(self) -> None:
        """Remove the container (one already gone is fine)."""
        remove_container(self.container)

    def __repr__(self) -> str:
        return f"DockerSandbox({self.id[:12]}, image={self.spec.image!r})"


def remove_container(container: Container) -> None:
    """Force-remove, tolerating "already gone" and "removal already in progress" (auto_remove races)."""
    from docker.errors import APIError, NotFound

    try:
        container.remove(force=True)
    except NotFound:
        pass
    except APIError as exc:
        if "in progress" not in str(exc) and "No such container" not in str(exc):
            raise SandboxError(f"could not remove container {container.id[:12]}: {exc}") from exc

