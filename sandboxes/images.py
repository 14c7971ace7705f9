"""Building the sandbox images, cached by a hash of their recipe (an image label).

Two ways to build `m3lab/default`: a Dockerfile `FROM python:3.11-slim` where a registry answers, and fully
offline with debootstrap + `docker import` where none does (these project machines). `m3lab/torch-cpu` is
always a Dockerfile build FROM the local `m3lab/default`, its wheels downloaded on the host first, so it needs
no network inside the build.
"""
from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sandboxes.base import SandboxError
from sandboxes.engine import LABEL_RECIPE

if TYPE_CHECKING:
    import docker

RECIPES = Path(__file__).parent / "images"
IMAGES = ("default", "torch-cpu")
"""Images `m3lab sandbox build` builds, in dependency order. The CUDA recipe is built only on GPU hosts."""
SUITE = "bookworm"
"""Debian suite of the offline build: its python3 is 3.11, which the cp311 torch wheel needs."""
BASE_IMAGE = "python:3.11-slim"
TORCH_WHEEL = Path("/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")
DEBOOTSTRAP_CACHE = Path("/var/cache/m3lab/debootstrap")
HEADER_DEBS = ("libpython3.11-dev",)
"""Python headers for C++ extensions in torch-cpu: the offline base (bookworm's python3) has none; a host on the
same Debian suite downloads the .deb (`apt-get download`), the build unpacks it (python:3.11-slim has them)."""
Method = Literal["auto", "offline", "registry"]
Log = Callable[[str], None]


@dataclass(frozen=True)
class BuildResult:
    """What `build_image` did."""

    tag: str
    recipe_hash: str
    built: bool
    """False when an image of the same recipe was already there (cache hit)."""
    method: str
    """"debootstrap", "dockerfile" or "cached"."""
    duration_s: float


def tag_of(name: str) -> str:
    return f"m3lab/{name}:latest"


def _hash_files(paths: list[Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for p in sorted(paths):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def recipe_hash(name: str, method: str, base_id: str = "") -> str:
    """Hash of everything that decides an image's contents for one build method."""
    if name == "default" and method == "debootstrap":
        return _hash_files([RECIPES / "default" / "packages.txt"], f"debootstrap:{SUITE}")
    if name == "default":
        return _hash_files([RECIPES / "default" / "Dockerfile"], f"dockerfile:{BASE_IMAGE}")
    if name == "torch-cpu":
        files = [RECIPES / "torch-cpu" / "Dockerfile", RECIPES / "torch-cpu" / "requirements.txt"]
        return _hash_files(files, f"base:{base_id};debs:{','.join(HEADER_DEBS)}")
    raise SandboxError(f"unknown image {name!r}; known: {', '.join(IMAGES)}")


def image_label(client: docker.DockerClient, tag: str) -> tuple[str, str] | None:
    """(image id, recipe label) of a local image, or None when absent."""
    from docker.errors import ImageNotFound

    try:
        image = client.images.get(tag)
    except ImageNotFound:
        return None
    labels = image.attrs.get("Config", {}).get("Labels") or {}
    return image.id, labels.get(LABEL_RECIPE, "")


def registry_reachable(timeout_s: float = 3.0) -> bool:
    """True when Docker Hub answers on 443 (a TCP connect; no pull is attempted)."""
    try:
        with socket.create_connection(("registry-1.docker.io", 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def _run(cmd: list[str] | str, log: Log, shell: bool = False) -> None:
    log(f"$ {cmd if isinstance(cmd, str) else ' '.join(cmd)}")
    proc = subprocess.run(cmd, shell=shell, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SandboxError(f"build step failed (exit {proc.returncode}): {cmd}\n{proc.stderr[-3000:]}")


def apt_mirror() -> str:
    """The Debian mirror apt already uses (deb822 `URIs:` or one-line `deb URL SUITE`)."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")]
    sources += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    for path in sources:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            parts = line.split()
            if line.startswith("URIs:") and len(parts) > 1 and "security" not in parts[1]:
                return parts[1]
            if len(parts) >= 3 and parts[0] == "deb" and "debian" in parts[1] and "security" not in parts[1]:
                return parts[1]
    return "http://deb.debian.org/debian"


def _packages() -> list[str]:
    text = (RECIPES / "default" / "packages.txt").read_text()
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def _build_default_offline(h: str, log: Log) -> None:
    if shutil.which("debootstrap") is None:
        raise SandboxError("offline build needs debootstrap: apt-get install -y debootstrap")
    DEBOOTSTRAP_CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="m3lab-rootfs-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(_packages())}",
              f"--cache-dir={DEBOOTSTRAP_CACHE}", SUITE, str(rootfs), apt_mirror()], log)
        # Package caches and lists are dead weight in a read-only image.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
            (rootfs / junk).mkdir(parents=True, exist_ok=True)
        (rootfs / "work").mkdir(exist_ok=True)
        changes = [f"LABEL {LABEL_RECIPE}={h}", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "ENV HOME=/tmp", "ENV MPLBACKEND=Agg", "ENV PYTHONDONTWRITEBYTECODE=1",
                   "WORKDIR /work", 'CMD ["python3"]']
        change_args = " ".join(f"--change '{c}'" for c in changes)
        _run(f"tar -C {rootfs} -c . | docker import {change_args} - {tag_of('default')}", log, shell=True)


def _build_dockerfile(client: docker.DockerClient, context: Path, tag: str, h: str, log: Log,
                      pull: bool, buildargs: dict[str, str] | None = None) -> None:
    from docker.errors import APIError, BuildError

    log(f"docker build {context} -> {tag}")
    try:
        client.images.build(path=str(context), tag=tag, labels={LABEL_RECIPE: h}, buildargs=buildargs or {},
                            rm=True, forcerm=True, pull=pull, network_mode=None if pull else "none")
    except (BuildError, APIError) as exc:
        lines = [str(c.get("stream") or c.get("error") or "") for c in getattr(exc, "build_log", [])]
        raise SandboxError(f"docker build of {tag} failed: {exc}\n{''.join(lines)[-3000:]}") from exc


def _torch_context(tmp: Path, log: Log) -> Path:
    """Build context for torch-cpu: the Dockerfile plus every wheel it needs, downloaded on the host."""
    ctx = tmp / "ctx"
    shutil.copytree(RECIPES / "torch-cpu", ctx)
    wheels = ctx / "wheels"
    wheels.mkdir()
    shutil.copy(RECIPES / "torch-cpu" / "requirements.txt", wheels / "requirements.txt")
    links = ["--find-links", str(TORCH_WHEEL.parent)] if TORCH_WHEEL.exists() else []
    if not links:
        log(f"{TORCH_WHEEL} missing: pip downloads torch==2.13.0 (CPU) instead")
        links = ["--extra-index-url", "https://download.pytorch.org/whl/cpu"]
    # The image's python is 3.11 on x86_64, whatever the host runs: ask pip for those wheels explicitly.
    _run([sys.executable, "-m", "pip", "download", "-q", "-d", str(wheels), *links, "--only-binary=:all:",
          "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
          "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
          "--platform", "manylinux2014_x86_64", "-r", str(wheels / "requirements.txt")], log)
    _download_debs(wheels / "debs", log)
    return ctx


def _download_debs(dest: Path, log: Log) -> None:
    """The Python header .debs, when this host's apt knows them (a Debian bookworm host); otherwise the base
    must bring its own headers (the registry base python:3.11-slim does; the Dockerfile checks)."""
    dest.mkdir()
    if shutil.which("apt-get") is None:
        log("apt-get missing: relying on the base image's Python headers")
        return
    proc = subprocess.run(["apt-get", "download", *HEADER_DEBS], cwd=dest, capture_output=True, text=True)
    if proc.returncode != 0:  # package lists missing or stale (a fresh CI machine): refresh once, retry
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
        proc = subprocess.run(["apt-get", "download", *HEADER_DEBS], cwd=dest, capture_output=True, text=True)
    log(f"$ apt-get download {' '.join(HEADER_DEBS)} -> exit {proc.returncode}")
    if proc.returncode != 0:
        log(f"apt-get download failed ({proc.stderr.strip()[-300:]}): relying on the base image's Python headers")


def choose_method(client: docker.DockerClient, method: Method) -> str:
    """"dockerfile" where the base can be had (present or a registry answers), else "debootstrap"."""
    if method == "offline":
        return "debootstrap"
    if method == "registry" or image_label(client, BASE_IMAGE) is not None or registry_reachable():
        return "dockerfile"
    return "debootstrap"


def build_image(client: docker.DockerClient, name: str, method: Method = "auto", force: bool = False,
                log: Log = print) -> BuildResult:
    """Build one image unless an image of the same recipe is already there."""
    if name not in IMAGES:
        raise SandboxError(f"unknown image {name!r}; known: {', '.join(IMAGES)}")
    start = time.monotonic()
    tag = tag_of(name)
    present = image_label(client, tag)
    if name == "default":
        how = choose_method(client, method)
        h = recipe_hash(name, how)
        # Either recipe's image is fine: a machine that gains a registry keeps its offline image.
        current = {recipe_hash(name, "debootstrap"), recipe_hash(name, "dockerfile")}
    else:
        base = image_label(client, tag_of("default"))
        if base is None:
            raise SandboxError("m3lab/torch-cpu is built FROM m3lab/default: build that first")
        how, h = "dockerfile", recipe_hash(name, "dockerfile", base[0])
        current = {h}
    if present is not None and present[1] in current and not force:
        return BuildResult(tag, present[1], False, "cached", time.monotonic() - start)
    log(f"{tag}: building ({how}, recipe {h})")
    if name == "default" and how == "debootstrap":
        _build_default_offline(h, log)
    elif name == "default":
        _build_dockerfile(client, RECIPES / "default", tag, h, log, pull=True)
    else:
        with tempfile.TemporaryDirectory(prefix="m3lab-torch-", dir="/var/tmp") as tmp:
            ctx = _torch_context(Path(tmp), log)
            _build_dockerfile(client, ctx, tag, h, log, pull=False, buildargs={"BASE": tag_of("default")})
    return BuildResult(tag, h, True, how, time.monotonic() - start)
