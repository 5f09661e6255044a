"""Result tables: one CSV, one Markdown file and one JSON provenance record per table.

``results/tables/<name>.csv`` holds the numbers, ``<name>.md`` the same table with its title,
notes and a provenance line for readers, ``<name>.json`` the full run metadata (profile, date,
machine, thread settings, library versions, parameters).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.4g}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value).replace("|", "\\|")


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table; floats to 4 significant digits, NaN as an en dash."""
    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in df.columns) + " |"
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def write_table(df: pd.DataFrame, name: str, results_dir: str | Path, *, title: str,
                metadata: dict[str, Any], notes: Iterable[str] = ()) -> dict[str, Path]:
    """Write ``df`` as ``<results_dir>/tables/<name>.{csv,md,json}``.

    Parameters
    ----------
    metadata
        From `onnxlab.reproducibility.run_metadata`; must hold ``profile`` and ``date``.
    notes
        Sentences shown under the table (substitutions, where our ratios differ from the paper's).

    Returns
    -------
    dict
        ``{"csv": path, "md": path, "json": path}``.
    """
    folder = Path(results_dir) / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    notes = list(notes)
    paths = {ext: folder / f"{name}.{ext}" for ext in ("csv", "md", "json")}
    df.to_csv(paths["csv"], index=False)
    machine = metadata.get("machine", {})
    versions = metadata.get("versions", {})
    provenance = (
        f"Profile `{metadata['profile']}`, {metadata['date']}, {machine.get('cpu', '?')} "
        f"({machine.get('logical_cores', '?')} logical cores"
        + (f"; {', '.join(machine['cpu_extensions'])}" if machine.get("cpu_extensions") else "") + "), "
        + ", ".join(f"{k} {v}" for k, v in versions.items() if v != "absent")
    )
    lines = [f"# {title}", "", to_markdown(df), ""]
    if notes:
        lines += ["Notes:", "", *[f"- {n}" for n in notes], ""]
    lines += [f"_{provenance}._", ""]
    paths["md"].write_text("\n".join(lines))
    paths["json"].write_text(json.dumps({"title": title, "notes": notes, "columns": list(df.columns),
                                         **metadata}, indent=2, default=str))
    return paths


def figure_path(results_dir: str | Path, name: str, ext: str = "png") -> Path:
    """``<results_dir>/figures/<name>.<ext>``, with its folder created (``name`` may hold one, ``graphs/lenet1``)."""
    path = Path(results_dir) / "figures" / f"{name}.{ext}"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
