"""Shared settings of the reliability suite (docs/reliability.md): a stateful model of
the money paths, the attack checks, crash safety. ``make reliability`` runs it with more
examples and writes the figures table; CI runs it with a fixed seed and few examples."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

#: How many examples the stateful model runs (``make reliability`` raises it).
EXAMPLES = int(os.environ.get("KPAY_RELIABILITY_EXAMPLES", "6"))
#: Steps per example.
STEPS = int(os.environ.get("KPAY_RELIABILITY_STEPS", "30"))
#: Where figures go for the report (``make reliability`` sets it); None: not kept.
REPORT_DIR = os.environ.get("KPAY_RELIABILITY_REPORT")


def record_figures(name: str, figures: dict[str, Any]) -> None:
    """Keep one module's figures for docs/reliability.md (when a report is being made)."""
    if not REPORT_DIR:
        return
    path = Path(REPORT_DIR)
    path.mkdir(parents=True, exist_ok=True)
    (path / f"{name}.json").write_text(json.dumps(figures, ensure_ascii=False, indent=2))
