"""The figures a run produces: printed as a table, written as JSON."""

from __future__ import annotations

import json
import math
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def percentile(values: Sequence[float], share: float) -> float:
    """Return the `share` (0..1) percentile of `values`, nearest-rank; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ms(seconds: float) -> str:
    """Format a duration given in seconds as milliseconds."""
    if math.isnan(seconds):
        return "n/a"
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


@dataclass
class Figure:
    """One row of the table: a measured value, the baseline it is read against, their ratio."""

    section: str
    name: str
    value: str
    baseline: str = ""
    ratio: float | None = None
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    quick: bool
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    figures: list[Figure] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def add(
        self,
        section: str,
        name: str,
        value: str,
        *,
        baseline: str = "",
        ratio: float | None = None,
        note: str = "",
        **data: Any,
    ) -> Figure:
        figure = Figure(section, name, value, baseline, ratio, note, data)
        self.figures.append(figure)
        print(f"  {name}: {value}" + (f"  (ratio {ratio:.2f})" if ratio is not None else ""))
        return figure

    def table(self) -> str:
        """Return the figures as a Markdown table, one section after another."""
        lines = ["| Figure | Value | Baseline | Ratio | Notes |", "|---|---|---|---|---|"]
        section = None
        for figure in self.figures:
            if figure.section != section:
                section = figure.section
                lines.append(f"| **{section}** | | | | |")
            ratio = "" if figure.ratio is None else f"{figure.ratio:.2f}"
            cells = [figure.name, figure.value, figure.baseline, ratio, figure.note]
            lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
        return "\n".join(lines)

    def write(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        stamp = self.started_at.replace(":", "").replace("-", "")[:15]
        path = directory / f"bench-{stamp}{'-quick' if self.quick else ''}.json"
        document = {
            "started_at": self.started_at,
            "quick": self.quick,
            "seconds": round(self.seconds, 1),
            "machine": self.machine,
            "figures": [asdict(figure) for figure in self.figures],
        }
        path.write_text(json.dumps(document, indent=2, default=str) + "\n")
        (directory / "latest.json").write_text(path.read_text())
        return path


def machine() -> dict[str, Any]:
    """Describe the machine the run happened on."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        memory = f"{int(first.split()[1]) / 1024 / 1024:.0f} GiB"
    except (OSError, IndexError, ValueError):
        pass

    def version(*command: str) -> str:
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=5, check=False)
        except OSError:
            return ""
        return (
            (out.stdout or out.stderr).strip().splitlines()[0] if out.stdout or out.stderr else ""
        )

    import os

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "python": platform.python_version(),
        "postgresql": version("psql", "--version"),
        "redis": version("redis-server", "--version"),
        "kernel": platform.release(),
    }
