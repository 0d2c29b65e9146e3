"""tools/lib/debian-mirror.sh: the mirror comes from the machine's apt configuration, or nowhere.

Both scripts that fetch from Debian (the Docker stand-in images, the free-threaded CPython
build) rely on it instead of naming a host, so what it accepts and skips is pinned here.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "tools" / "lib" / "debian-mirror.sh"


def mirror(etc: Path, env_mirror: str | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "DEBIAN_MIRROR_APT_ETC": str(etc)}
    if env_mirror is not None:
        env["DEBIAN_MIRROR"] = env_mirror
    return subprocess.run(
        ["bash", "-c", f'source "{LIB}" && debian_mirror'], env=env, capture_output=True, text=True, timeout=10
    )


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    return tmp_path


def test_one_line_format_with_options(etc: Path) -> None:
    (etc / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian/ bookworm main\n"
    )
    result = mirror(etc)
    assert (result.returncode, result.stdout) == (0, "http://one.example/debian\n")


def test_deb822_skips_security_and_disabled_stanzas(etc: Path) -> None:
    (etc / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n\n"
        "Types: deb\nURIs: http://sec.example/debian-security http://two.example/debian\n"
        "Suites: bookworm\n"
    )
    result = mirror(etc)
    assert (result.returncode, result.stdout) == (0, "http://two.example/debian\n")


def test_files_that_apt_ignores_are_ignored(etc: Path) -> None:
    (etc / "sources.list.d" / "old.list.disabled").write_text("deb http://x.example/debian a b\n")
    (etc / "sources.list.d" / "other.list").write_text("deb https://vendor.example/apt stable main\n")
    result = mirror(etc)
    assert (result.returncode, result.stdout) == (1, "")


def test_environment_overrides(etc: Path) -> None:
    result = mirror(etc, env_mirror="http://override.example/debian/")
    assert (result.returncode, result.stdout) == (0, "http://override.example/debian\n")
