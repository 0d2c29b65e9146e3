"""What the Docker tests share: running tools, skipping (or, in CI, failing) where one is missing.

A missing tool or engine skips a test; with ECHOSERVER_DOCKER_REQUIRED=1 (as
in CI) it fails it instead, so that a broken set-up cannot pass as a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CI_DOCKER = REPO / "ci" / "docker"
REQUIRED = os.environ.get("ECHOSERVER_DOCKER_REQUIRED") == "1"


def tool_env() -> dict[str, str]:
    """The environment for tool subprocesses: this interpreter's scripts and sbin on PATH."""
    env = dict(os.environ)
    extra = [str(Path(sys.executable).parent), "/usr/sbin", "/sbin"]
    env["PATH"] = os.pathsep.join([*extra, env.get("PATH", "")])
    env["PYTHON"] = sys.executable
    return env


def need(condition: bool, reason: str) -> None:
    if condition:
        return
    if REQUIRED:
        pytest.fail(f"{reason} (ECHOSERVER_DOCKER_REQUIRED=1)")
    pytest.skip(reason)


def need_tool(name: str) -> None:
    need(shutil.which(name, path=tool_env()["PATH"]) is not None, f"{name} is not installed")


def run(args, *, env=None, timeout=120, check=True, cwd=REPO) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env or tool_env(),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
        )
    return result


def parse_exports(text: str) -> dict[str, str]:
    """``export NAME=value`` lines (what ci/docker/dockerd.sh prints) as a dict."""
    env = {}
    for line in text.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export ") :].partition("=")
            env[key] = value.strip("'\"")
    return env


def compose_env() -> dict[str, str]:
    """An environment in which ``docker compose`` works without an engine (the plugin linked)."""
    need_tool("docker")
    env = tool_env()
    result = run([CI_DOCKER / "dockerd.sh", "plugin"], env=env, check=False)
    need(result.returncode == 0, f"no docker compose plugin: {result.stderr.strip()[-300:]}")
    env.update(parse_exports(result.stdout))
    return env


def load_yaml_documents(path: Path) -> list[dict]:
    yaml = pytest.importorskip("ruamel.yaml")
    return [doc for doc in yaml.YAML(typ="safe").load_all(path.read_text()) if doc]
