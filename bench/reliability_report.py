"""Write docs/reliability.md from the figures a ``make reliability`` run kept.

    python bench/reliability_report.py <figures dir> <output .md>

Each module of the suite leaves one JSON file (``record_figures``): either
``{"rows": [{column: value}]}`` (a table of what was tried and what held) or flat
figures. The page says when, where and with what seed they were measured.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

TITLES = {
    "money_model": "Stateful model of the money paths",
    "attacks": "Attack checks",
    "crash": "Crash safety: a kill at each failpoint, then a restart",
    "crash_random": "Crash safety: kills at random moments under load",
    "fuzz": "Fuzzing the API from its OpenAPI document (schemathesis)",
}
INTRO = """# Reliability figures

Measured, not promised: `make reliability` runs the reliability suite with more
examples than CI and writes this page. CI runs the same tests with a fixed seed and
fewer examples on every change (`tests/reliability`, the failpoint crash tests, the
schemathesis run), so a regression fails the build; this page records the last full run.
"""


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} CPUs ({cpu or platform.processor() or 'unknown'}), "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}")


def table(rows: list[dict]) -> list[str]:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")).replace("|", "\\|")
                                       for c in columns) + " |")
    return lines


def section(name: str, figures: dict) -> list[str]:
    lines = [f"## {TITLES.get(name, name)}", ""]
    if "rows" in figures:
        lines += table(figures["rows"]) if figures["rows"] else ["(nothing recorded)"]
    else:
        lines += ["| figure | value |", "|---|---:|"]
        lines += [f"| {key} | {value:,} |" if isinstance(value, int) and key != "seed" else
                  f"| {key} | {value} |" for key, value in figures.items()]
    return [*lines, ""]


def main(figures_dir: str, output: str) -> int:
    found = sorted(Path(figures_dir).glob("*.json"))
    if not found:
        print(f"no figures in {figures_dir}: run make reliability", file=sys.stderr)
        return 1
    order = list(TITLES)
    found.sort(key=lambda p: order.index(p.stem) if p.stem in order else len(order))
    lines = [INTRO,
             f"Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; hypothesis "
             f"derandomized (seed fixed by the test), "
             f"{os.environ.get('KPAY_RELIABILITY_EXAMPLES', '6')} examples of "
             f"{os.environ.get('KPAY_RELIABILITY_STEPS', '30')} steps.", ""]
    for path in found:
        lines += section(path.stem, json.loads(path.read_text()))
    Path(output).write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {output} from {len(found)} figure files")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
