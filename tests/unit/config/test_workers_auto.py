"""`service.workers: auto`: the CPUs of the affinity mask, at most the cgroup's CPU
quota rounded up (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`), on
fake cgroup trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.config.model import cgroup_cpu_limit, resolve_workers


def tree(root: Path, files: dict[str, str], proc: str) -> tuple[str, str]:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    root.mkdir(parents=True, exist_ok=True)
    cgroup = root / "proc-self-cgroup"
    cgroup.write_text(proc)
    return str(root / "fs"), str(cgroup)


@pytest.mark.parametrize(("files", "proc", "limit"), [
    ({"fs/cpu.max": "max 100000\n"}, "0::/\n", None),
    ({"fs/cpu.max": "150000 100000\n"}, "0::/\n", 2),
    ({"fs/cpu.max": "100000 100000\n"}, "0::/\n", 1),
    ({"fs/cpu.max": "5000 100000\n"}, "0::/\n", 1),  # 0.05 CPU: still one process
    # The process's own cgroup and an ancestor's: the strictest wins.
    ({"fs/cpu.max": "max 100000", "fs/a/cpu.max": "300000 100000",
      "fs/a/b/cpu.max": "max 100000"}, "0::/a/b\n", 3),
    ({"fs/a/cpu.max": "800000 100000", "fs/a/b/cpu.max": "250000 100000"},
     "0::/a/b\n", 3),
    # A container: its path names the host's hierarchy, its cgroup is the mount's root.
    ({"fs/cpu.max": "200000 100000"}, "0::/kubepods/pod1/c1\n", 2),
    # v1
    ({"fs/cpu,cpuacct/cpu.cfs_quota_us": "-1", "fs/cpu,cpuacct/cpu.cfs_period_us": "100000"},
     "2:cpu,cpuacct:/\n1:memory:/\n", None),
    ({"fs/cpu,cpuacct/docker/x/cpu.cfs_quota_us": "250000",
      "fs/cpu,cpuacct/docker/x/cpu.cfs_period_us": "100000"},
     "2:cpu,cpuacct:/docker/x\n", 3),
    ({"fs/cpu/cpu.cfs_quota_us": "50000", "fs/cpu/cpu.cfs_period_us": "100000"},
     "1:cpu:/\n", 1),
    # Unreadable or nonsense: no limit.
    ({"fs/cpu.max": "lots 100000"}, "0::/\n", None),
    ({"fs/cpu.max": "100000 0"}, "0::/\n", None),
    ({}, "0::/\n", None),
])
def test_cgroup_cpu_limit(tmp_path: Path, files: dict[str, str], proc: str,
                          limit: int | None) -> None:
    assert cgroup_cpu_limit(*tree(tmp_path, files, proc)) == limit


def test_auto_is_the_smaller_of_affinity_and_quota(tmp_path: Path) -> None:
    cpus = len(os.sched_getaffinity(0))
    root, proc = tree(tmp_path, {"fs/cpu.max": "100000 100000"}, "0::/\n")
    assert resolve_workers("auto", cgroup_root=root, proc_cgroup=proc) == 1
    root, proc = tree(tmp_path / "big", {"fs/cpu.max": "100000000 100000"}, "0::/\n")
    assert resolve_workers("auto", cgroup_root=root, proc_cgroup=proc) == min(cpus, 256)
    root, proc = tree(tmp_path / "none", {}, "0::/\n")
    assert resolve_workers("auto", cgroup_root=root, proc_cgroup=proc) == cpus
    assert resolve_workers(3, cgroup_root=root, proc_cgroup=proc) == 3


def test_no_proc_cgroup_reads_the_roots_files(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("120000 100000")
    assert cgroup_cpu_limit(str(tmp_path), str(tmp_path / "missing")) == 2
