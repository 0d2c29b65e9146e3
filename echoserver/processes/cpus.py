"""How many CPUs this process may really use: what ``--workers auto`` means.

``os.cpu_count()`` counts the machine's CPUs, which overstates what a process
gets when it is pinned to some of them (``taskset``, a cpuset) or runs in a
container with a CPU quota (``docker run --cpus 1.5``, a Kubernetes limit).
We take the affinity mask, then cap it by the cgroup's CPU bandwidth limit
where one can be read: ``cpu.max`` on cgroup v2, ``cpu.cfs_quota_us`` over
``cpu.cfs_period_us`` on v1, on the process's own cgroup and every ancestor.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def available_cpus(root: str = "/") -> int:
    """CPUs available to this process, at least 1; ``root`` lets tests supply a fake ``/proc`` and ``/sys``."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    limit = cgroup_cpu_limit(Path(root))
    if limit is not None:
        # Round a fractional quota up: 1.5 CPUs' worth of time is used fully by
        # two workers, while one would leave half a CPU idle.
        count = min(count, math.ceil(limit))
    return max(1, count)


def cgroup_cpu_limit(root: Path = Path("/")) -> float | None:
    """The tightest CPU quota, in CPUs, on this process's cgroups (v1 or v2), or ``None`` if unlimited or unreadable."""
    try:
        mountinfo = (root / "proc/self/mountinfo").read_text()
        memberships = (root / "proc/self/cgroup").read_text()
    except OSError:
        return None
    limits = []
    for hierarchy_root, mountpoint, fstype, options in _cgroup_mounts(mountinfo):
        for hierarchy_id, controllers, path in (
            line.split(":", 2) for line in memberships.splitlines() if line.count(":") >= 2
        ):
            if fstype == "cgroup2" and hierarchy_id == "0" and not controllers:
                reader = _v2_limit
            elif fstype == "cgroup" and "cpu" in controllers.split(",") and "cpu" in options:
                reader = _v1_limit
            else:
                continue
            for directory in _own_and_ancestors(root / mountpoint.lstrip("/"), path, hierarchy_root):
                limit = reader(directory)
                if limit is not None:
                    limits.append(limit)
    return min(limits) if limits else None


def _cgroup_mounts(mountinfo: str):
    """``(hierarchy root, mount point, fstype, super options)`` of each cgroup mount in ``/proc/self/mountinfo``."""
    for line in mountinfo.splitlines():
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
            yield fields[3], fields[4], tail[0], tail[2].split(",")


def _own_and_ancestors(mountpoint: Path, path: str, hierarchy_root: str):
    """The process's cgroup directory under ``mountpoint`` and each parent up to the mount point itself.

    In a container the path in ``/proc/self/cgroup`` may name the host's
    hierarchy, which is not mounted here; then only the mount point is looked at.
    """
    relative = os.path.relpath(path, hierarchy_root) if path.startswith(hierarchy_root) else "."
    parts = [] if relative == "." else [p for p in relative.split("/") if p and p != ".."]
    for depth in range(len(parts), -1, -1):
        yield mountpoint.joinpath(*parts[:depth])


def _v2_limit(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _v1_limit(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None
