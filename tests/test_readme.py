"""The README's fresh-machine commands are the ones CI actually runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> tuple[str, str]:
    """The two code blocks of the README's quick start: install and run the server, install and test."""
    section = re.search(r"^## Quick start\n(.*?)^## ", (ROOT / "README.md").read_text(), re.M | re.S)[1]
    blocks = re.findall(r"^```\n(.*?)\n```", section, re.M | re.S)
    assert len(blocks) == 2, blocks
    return blocks[0], blocks[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    _, test_command = quick_start_commands()
    steps = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert steps[-1] == test_command
    assert test_command.endswith("&& pytest")  # the whole suite: no marker filters, no paths


def test_the_server_command_installs_and_starts_a_server() -> None:
    server_command, _ = quick_start_commands()
    assert server_command.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install ")
    assert re.search(r"&& echoserver --backend \w+ --port \d+$", server_command)
