"""Issue 12: model-written code never reaches the host. Each attack is run as an attacker writes it, from inside a
real Docker sandbox, through the real loop (`start_run` with a scripted producer whose commands run in its
sandbox); then the host-side readers (`m3lab runs diff`, the viewer) are exercised on the result. A marker file
written on the host, a changed host file, or a host secret in the run fails the test."""
from __future__ import annotations

import json
import os
import stat
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.config import BudgetLimits, LoopSettings, Settings
from orchestrator.runner import start_run
from orchestrator.safegit import git_text
from orchestrator.viewer.server import ViewerServer
from tasks.code.task import CodeTask
from tests.orchestrator.support import Script, make_code_workspace, tool_call

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]
SECRET = "sk-host-secret-8c1f2e"


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Host-side things an attack would touch: a marker prefix, a victim file and folder, a secret file, and a
    secret in the orchestrator's environment."""
    monkeypatch.setenv("M3LAB_API_KEY", SECRET)
    victim_dir = tmp_path / "victim_dir"
    victim_dir.mkdir()
    (victim_dir / "host-only.txt").write_text(f"host folder content {SECRET}\n")
    victim = tmp_path / "victim.txt"
    victim.write_text("ORIGINAL VICTIM\n")
    secret = tmp_path / "secret.txt"
    secret.write_text((SECRET + "\n") * 10000 + "x" * 7)  # 220,007 bytes: a size the listing must not reveal
    return {"marker": f"/tmp/m3lab-pwn-{uuid.uuid4().hex[:10]}", "victim": victim, "victim_dir": victim_dir,
            "secret": secret, "tmp": tmp_path}


def _markers(prefix: str) -> list[str]:
    folder, stem = os.path.split(prefix)
    return [n for n in os.listdir(folder) if n.startswith(stem)]


def _run(tmp: Path, image: str, commands: list[str], protect: list[str] | None = None, extra: list | None = None,
         quota_mb: int = 8192) -> Path:
    src = make_code_workspace(tmp, solved=True)
    (src / "tests").mkdir(exist_ok=True)
    (src / "tests" / "test_calc.py").write_text("from calc import add\n\ndef test_add():\n    assert add(2, 3) == 5\n")
    actions = [tool_call("run", command=c) for c in commands] + list(extra or []) + [tool_call("done", summary="ok")]
    settings = Settings(runs_dir=tmp / "runs", budget=BudgetLimits(max_iterations=1),
                        loop=LoopSettings(max_turns=len(actions) + 1, workspace_quota_mb=quota_mb),
                        sandbox_backend="docker")
    task = CodeTask(source=str(src), check_command="bash check.sh", main="calc.py", protect=protect or ["check.sh"],
                    image=image)
    return start_run(task, settings, models=Script(producer=actions).factory())


def _events(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]


def _tree(run: Path) -> list[str]:
    return git_text(run / "git", "ls-tree", "-r", "--name-only", "HEAD").split()


def _read_every_host_path(run: Path) -> str:
    """What a user does after a run: `m3lab runs diff`, and the viewer's run and iteration pages."""
    from orchestrator.workspace import diff_for_iteration

    diff = diff_for_iteration(run / "git", 1)
    with ViewerServer(run.parent, port=0) as viewer:
        assert httpx.get(f"{viewer.url}/api/runs/{run.name}").status_code == 200
        page = httpx.get(f"{viewer.url}/api/runs/{run.name}/iterations/1").json()
    assert "error" not in page["diff"], page["diff"]
    assert page["diff"]["patch"] == diff
    return diff


GIT_ATTACK = r"""
M={marker}
mkdir -p .git/hooks hooks sub
cat > .git/config <<END_OF_CONFIG
[core]
	repositoryformatversion = 0
	bare = false
	fsmonitor = "touch $M-fsmonitor; false"
	hooksPath = /work/hooks
	worktree = {victim_dir}
	pager = touch $M-pager
	attributesFile = /work/attrs
	sshCommand = touch $M-ssh
[diff]
	external = /work/hooks/extdiff
[diff "pwn"]
	textconv = sh -c 'touch $M-textconv; cat'
	command = touch $M-diffcmd
[filter "pwn"]
	clean = sh -c 'touch $M-clean; cat'
	smudge = sh -c 'touch $M-smudge; cat'
	process = touch $M-process
	required = true
[gc]
	auto = 1
[include]
	path = /work/more.cfg
END_OF_CONFIG
echo 'ref: refs/heads/main' > .git/HEAD
for h in pre-commit post-commit post-index-change reference-transaction pre-auto-gc post-checkout post-rewrite \
         fsmonitor-watchman prepare-commit-msg commit-msg post-merge extdiff; do
  printf '#!/bin/sh\ntouch %s-hook-%s\n' "$M" "$h" > hooks/$h
  cp hooks/$h .git/hooks/$h
done
chmod +x hooks/* .git/hooks/*
printf '* filter=pwn diff=pwn\n*.py text working-tree-encoding=UTF-16\n' > .gitattributes
cp .gitattributes attrs
printf '[filter "pwn"]\n\tclean = touch %s-included\n' "$M" > more.cfg
printf '[submodule "x"]\n\tpath = x\n\turl = ext::sh -c touch%% %s-submodule\n' "$M" > .gitmodules
cd sub && git init -q && git config core.fsmonitor "touch $M-nested; false" \
  && printf '#!/bin/sh\ntouch %s-nested-hook\n' "$M" > .git/hooks/post-index-change \
  && chmod +x .git/hooks/post-index-change && echo nested data > f.txt && cd ..
echo '# changed by the producer' >> calc.py
grep ' /work ' /proc/self/mountinfo
"""


def test_git_config_hooks_and_attributes_never_run_on_the_host(tmp_path: Path, sandbox_image: str,
                                                                host: dict[str, Any],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # The orchestrator's own environment carries git settings too: none may reach a host-side git.
    monkeypatch.setenv("GIT_EXTERNAL_DIFF", f"touch {host['marker']}-env-extdiff")
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", f"'core.fsmonitor'='touch {host['marker']}-env-fsmonitor'")
    monkeypatch.setenv("GIT_DIR", str(host["victim_dir"]))
    run = _run(tmp_path, sandbox_image, [GIT_ATTACK.replace("{marker}", host["marker"])
                                         .replace("{victim_dir}", str(host["victim_dir"]))])
    diff = _read_every_host_path(run)
    assert _markers(host["marker"]) == [], "a payload ran on the host"
    events = _events(run)
    attack = next(e for e in events if e["kind"] == "exec" and e["where"] == "producer")
    assert attack["exit_code"] == 0, attack
    mount = [ln for ln in attack["stdout_tail"].splitlines() if " /work " in ln]
    assert len(mount) == 1 and mount[0].split()[3].endswith("/workspace"), mount  # the work tree alone
    git_dir = run / "git"
    assert stat.S_IMODE(git_dir.stat().st_mode) == 0o700
    tree = _tree(run)
    # Everything the sandbox wrote is data: the attributes, modules, hooks and the nested repo's files are
    # committed as bytes; nothing named .git is; no file of the host folder core.worktree named came in.
    assert {".gitattributes", ".gitmodules", "hooks/post-index-change", "sub/f.txt", "calc.py"} <= set(tree)
    assert not any(part == ".git" for name in tree for part in name.split("/")), tree
    assert "host-only.txt" not in " ".join(tree) and SECRET not in diff
    calc = git_text(git_dir, "show", "HEAD:calc.py")
    assert "# changed by the producer" in calc and "\0" not in calc  # no working-tree-encoding conversion
    assert "* filter=pwn diff=pwn" in diff and "fsmonitor" in diff  # shown as text, never applied
    verdict = next(e for e in events if e["kind"] == "verdict")
    assert verdict["verdict"] == "pass", verdict  # the attack files are data; the check still ran on the code
    assert sorted(os.listdir(host["victim_dir"])) == ["host-only.txt"]


SYMLINK_ATTACK = r"""
rm check.sh && ln -s {victim} check.sh
rm -rf tests && ln -s {victim_dir} tests
ln -s {secret} leak.txt
ln -s ../../../../../../../../../../..{secret} leak_up.txt
ln -s /etc leakdir
ln -s calc.py alias.py
ls -la
"""


def test_symlinks_made_in_the_sandbox_are_never_followed_on_the_host(tmp_path: Path, sandbox_image: str,
                                                                     host: dict[str, Any]) -> None:
    before = sorted(os.listdir(host["victim_dir"]))
    reads = [tool_call("list_files", path="."), tool_call("read_file", path="leak.txt"),
             tool_call("read_file", path="leakdir/passwd"), tool_call("write_file", path="leak.txt", content="x"),
             tool_call("edit_file", path="leak_up.txt", old="x", new="y")]
    command = (SYMLINK_ATTACK.replace("{victim}", str(host["victim"])).replace("{victim_dir}", str(host["victim_dir"]))
               .replace("{secret}", str(host["secret"])))
    run = _run(tmp_path, sandbox_image, [command], protect=["check.sh", "tests"], extra=reads)
    _read_every_host_path(run)
    # Protected paths restored: nothing written through the links onto the host.
    assert host["victim"].read_text() == "ORIGINAL VICTIM\n"
    assert sorted(os.listdir(host["victim_dir"])) == before
    assert host["secret"].read_text().startswith(SECRET)
    events = _events(run)
    tools = {e["tool"]: e for e in events if e["kind"] == "tool_call" and e["tool"] != "run"}
    listing = tools["list_files"]["output"]
    assert "leak.txt  (link, not followed)" in listing and "220007" not in listing
    assert not tools["read_file"]["ok"] and "link" in tools["read_file"]["output"]
    assert not tools["write_file"]["ok"] and not tools["edit_file"]["ok"]
    # The check copy left out the escaping links, and the producer is told which.
    record = json.loads((run / "iterations" / "0001.json").read_text())
    summary = record["check"]["summary"]
    for name in ("check.sh", "tests", "leak.txt", "leak_up.txt", "leakdir"):
        assert f"symbolic link {name} ->" in summary, summary
    assert "alias.py" not in summary  # a relative link inside the tree is kept
    assert record["check"]["passed"], record["check"]  # the originals were put back for the check
    # No byte of the secret anywhere in the run's files (git objects are compressed: the diff was checked above).
    for path in run.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.relative_to(run).parts[0] != "git":
            assert SECRET.encode() not in path.read_bytes(), path
    with ViewerServer(run.parent, port=0) as viewer:
        for rel in ("workspace/leak.txt", "workspace/leakdir/passwd", "workspace/tests/host-only.txt"):
            response = httpx.get(f"{viewer.url}/api/runs/{run.name}/files/{rel}")
            assert response.status_code in (400, 404) and SECRET not in response.text, (rel, response.text)


def test_a_workspace_filled_past_its_quota_is_stopped_and_rolled_back(tmp_path: Path, sandbox_image: str) -> None:
    fill = "for i in $(seq 1 40); do head -c 8M /dev/zero > big$i.bin || break; sleep 0.05; done; echo filled"
    sparse = "truncate -s 3G sparse.bin && echo sparse"
    after = "ls /work && du -sm /work"
    run = _run(tmp_path, sandbox_image, [fill, sparse, after], quota_mb=64)
    execs = [e for e in _events(run) if e["kind"] == "exec" and e["where"] == "producer"]
    assert [e["reason"] for e in execs] == ["quota", "quota", "exited"], execs
    assert "disk quota" in execs[0]["stderr_tail"]
    assert len([e for e in _events(run) if e["kind"] == "rollback"]) == 2
    assert "big1.bin" not in execs[2]["stdout_tail"] and "sparse.bin" not in execs[2]["stdout_tail"]
    assert not any(n.endswith(".bin") for n in _tree(run))
    assert sum(p.stat().st_size for p in (run / "workspace").rglob("*") if p.is_file()) < 1 << 20


NEST = "python3 -c \"import os\nfor _ in range(3000):\n    os.mkdir('d'); os.chdir('d')\nprint('nested')\""
EMPTY = "python3 -c \"import os\nos.mkdir('e')\nfor i in range(20000):\n    open(f'e/{i}', 'w').close()\nprint('made')\""


def test_trees_shaped_to_slip_past_the_quota_are_stopped_and_rolled_back(tmp_path: Path, sandbox_image: str) -> None:
    """3,000 nested folders (past Python's recursion limit: the quota's watcher died, the run failed, and what the
    command wrote after them stayed on the host's disk), and 20,000 empty files (no bytes, but host inodes)."""
    from sandboxes import hostfs

    fill = "for i in $(seq 1 40); do head -c 8M /dev/zero > big$i.bin || break; sleep 0.05; done; echo filled"
    try:
        run = _run(tmp_path, sandbox_image, [f"{NEST}; sleep 2; {fill}", EMPTY, "ls /work && du -sm /work"],
                   quota_mb=64)
        execs = [e for e in _events(run) if e["kind"] == "exec" and e["where"] == "producer"]
        assert [e["reason"] for e in execs] == ["quota", "quota", "exited"], execs
        assert "cannot be measured" in execs[0]["stderr_tail"] and "filled" not in execs[0]["stdout_tail"]
        assert len([e for e in _events(run) if e["kind"] == "rollback"]) == 2
        assert json.loads((run / "run.json").read_text())["status"] == "succeeded"
        assert sorted(os.listdir(run / "workspace")) == ["calc.py", "check.sh", "tests"]
    finally:
        hostfs.remove_tree(tmp_path / "runs")  # pytest's clean-up could not remove a chain left by a failure
