"""Image recipes and their cache, the built images' contents, doctor and the CLI."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sandboxes import SandboxSpec, images, open_sandbox
from sandboxes.base import SandboxError


def test_recipe_hash_changes_only_with_the_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "images"
    shutil.copytree(images.RECIPES, copy)
    monkeypatch.setattr(images, "RECIPES", copy)
    h1 = images.recipe_hash("default", "debootstrap")
    assert images.recipe_hash("default", "debootstrap") == h1
    assert images.recipe_hash("default", "dockerfile") != h1
    with (copy / "default" / "packages.txt").open("a") as f:
        f.write("curl\n")
    assert images.recipe_hash("default", "debootstrap") != h1
    t1 = images.recipe_hash("torch-cpu", "dockerfile", "sha256:aaa")
    assert images.recipe_hash("torch-cpu", "dockerfile", "sha256:bbb") != t1  # a new base rebuilds torch-cpu
    with pytest.raises(SandboxError, match="unknown image"):
        images.recipe_hash("nope", "dockerfile")


def test_apt_mirror_is_a_url() -> None:
    assert images.apt_mirror().startswith(("http://", "https://"))


def test_packages_cover_the_issue_list() -> None:
    pkgs = set(images._packages())
    assert {"python3", "python3-numpy", "python3-pandas", "python3-matplotlib", "python3-scipy", "git", "gcc",
            "make", "python3-pytest"} <= pkgs
    assert (images.RECIPES / "cuda" / "Dockerfile").read_text().startswith("# m3lab/cuda")


@pytest.mark.docker
def test_offline_method_chosen_without_registry(docker_engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "registry_reachable", lambda timeout_s=3.0: False)
    if images.image_label(docker_engine, images.BASE_IMAGE) is None:
        assert images.choose_method(docker_engine, "auto") == "debootstrap"
    assert images.choose_method(docker_engine, "offline") == "debootstrap"
    assert images.choose_method(docker_engine, "registry") == "dockerfile"


@pytest.mark.docker
def test_build_is_cached(docker_engine, sandbox_image: str, torch_image: str) -> None:
    for name in images.IMAGES:
        res = images.build_image(docker_engine, name, log=lambda m: None)
        assert not res.built and res.duration_s < 5, res


@pytest.mark.docker
def test_default_image_contents(sandbox_image: str) -> None:
    probe = ("import numpy, pandas, matplotlib, scipy, pytest, sys; print(sys.version_info[:2]); "
             "import matplotlib.pyplot as plt; plt.plot([1, 2]); plt.savefig('/tmp/p.png'); print('ok')")
    with open_sandbox(SandboxSpec(image=sandbox_image), backend="docker", pool=False) as sb:
        res = sb.exec(["python3", "-c", probe], timeout_s=120)
        assert res.ok and res.stdout.split("\n")[1] == "ok", res
        assert sb.exec("git --version && gcc --version && make --version").ok


@pytest.mark.docker
@pytest.mark.slow
def test_torch_cpu_image(torch_image: str) -> None:
    probe = ("import sys, torch, triton; assert sys.version_info[:2] == (3, 11); "
             "print(torch.__version__, triton.__version__, (torch.ones(3) * 2).sum().item())")
    with open_sandbox(SandboxSpec(image=torch_image, memory_mb=3072), backend="docker", pool=False) as sb:
        res = sb.exec(["python3", "-c", probe], timeout_s=180)
    assert res.ok, res
    assert res.stdout.split() == ["2.13.0+cpu", "3.9.0", "6.0"]


@pytest.mark.docker
def test_doctor_reports_docker(docker_engine, sandbox_image: str) -> None:
    from sandboxes.doctor import diagnose

    report = diagnose()
    assert report.backend == "docker" and report.engine.startswith("Docker")
    assert report.images[sandbox_image] == "current"
    assert {"memory", "pids", "network", "wall time"} <= set(report.limits)


@pytest.mark.docker
def test_cli_build_doctor_reap(docker_engine, sandbox_image: str, torch_image: str) -> None:
    from orchestrator.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["sandbox", "build", "--image", "all"])
    assert res.exit_code == 0, res.output
    assert res.output.count("up to date") >= 2
    res = runner.invoke(app, ["sandbox", "doctor"])
    assert res.exit_code == 0 and "backend: docker" in res.output, res.output
    res = runner.invoke(app, ["sandbox", "reap"])
    assert res.exit_code == 0 and "removed" in res.output
    res = runner.invoke(app, ["sandbox", "build", "--image", "gpu-magic"])
    assert res.exit_code != 0


def test_doctor_without_engine_reports_process_backend(bwrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from sandboxes import doctor
    from sandboxes.engine import EngineUnavailable

    def no_engine(timeout_s: float = 10.0):
        raise EngineUnavailable("no Docker engine answers: test")

    monkeypatch.setattr(doctor, "connect", no_engine)
    report = doctor.diagnose()
    assert report.backend == "process" and report.ok
    assert "WEAKER" in " ".join(report.notes).upper()
    assert report.limits["memory"] in ("cgroup", "NOT enforced by cgroup (prlimit fallback)")
