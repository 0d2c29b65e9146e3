"""The documentation stays true: the README's table is the registry, the CLI reference is --help."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

from echoserver.backends import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_the_cli_reference_is_what_the_commands_say() -> None:
    generator = runpy.run_path(str(ROOT / "docs" / "gen_cli.py"))
    assert generator["main"](["gen_cli.py", "--check"]) == 0, "run: python docs/gen_cli.py"


def test_the_readme_backends_table_lists_the_registry_in_order() -> None:
    section = re.search(r"^## The backends\n(.*?)^## ", README, re.M | re.S)[1]
    names = re.findall(r"^\| `(\w+)` \|", section, re.M)
    assert names == list(REGISTRY)


def test_the_readme_is_the_front_door_not_the_house() -> None:
    assert len(README.splitlines()) <= 200


def test_every_relative_link_in_the_readme_exists() -> None:
    targets = re.findall(r"\]\(([^)\s]+)\)", README)
    local = [t.partition("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    assert local
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing


def test_every_docs_page_is_in_the_site_navigation() -> None:
    nav = set(re.findall(r"^\s+- [^:]+: (\S+\.md)$", (ROOT / "mkdocs.yml").read_text(), re.M))
    pages = {path.name for path in (ROOT / "docs").glob("*.md")}
    assert nav <= pages, nav - pages
    assert pages <= nav, pages - nav
