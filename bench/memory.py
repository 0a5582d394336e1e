"""Peak resident memory of the web and worker processes, sampled while the run goes on."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devstack import Stack


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def process_tree(pid: int) -> list[int]:
    """Return `pid` and all its descendants that are alive now."""
    tree, queue = [], [pid]
    while queue:
        current = queue.pop()
        if Path(f"/proc/{current}").exists():
            tree.append(current)
            queue += _children(current)
    return tree


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class MemorySampler:
    """Sample, every `interval` seconds, the RSS of each role's process tree."""

    def __init__(
        self,
        stack: Stack,
        roles: Iterable[str] = ("web", "worker", "platform"),
        interval: float = 0.5,
    ):
        self.stack = stack
        self.roles = tuple(roles)
        self.interval = interval
        self.peak_total: dict[str, int] = dict.fromkeys(self.roles, 0)  # KiB, whole tree
        self.peak_process: dict[str, int] = dict.fromkeys(self.roles, 0)  # KiB, one process
        self.processes: dict[str, int] = dict.fromkeys(self.roles, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-memory", daemon=True)

    def sample(self) -> None:
        for role in self.roles:
            process = self.stack.processes.get(role)
            if process is None or not process.alive():
                continue
            pids = process_tree(process.popen.pid)
            total = 0
            for pid in pids:
                rss = _status_kib(pid, "VmRSS")
                total += rss
                # The kernel's own high-water mark catches peaks between two samples.
                peak = max(rss, _status_kib(pid, "VmHWM"))
                self.peak_process[role] = max(self.peak_process[role], peak)
            self.peak_total[role] = max(self.peak_total[role], total)
            self.processes[role] = max(self.processes[role], len(pids))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sample()
        self._stop.set()
        self._thread.join(timeout=5)
