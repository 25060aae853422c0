"""The zoo report: batch.json, batch.md and a self-contained batch.html for one batch."""
from __future__ import annotations

import base64
import html
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pipeline.artifacts.folder import write_json
from pipeline.batch.result import VERDICTS, TaskResult

STAGES = ("export", "validate", "lint", "convert", "audit")


@dataclass(frozen=True)
class BatchSummary:
    """One batch: how it ran and what each model gave. `resumed` names models taken from earlier runs."""

    executor: str
    jobs: int
    wall_seconds: float
    results: tuple[TaskResult, ...]
    resumed: frozenset[str] = frozenset()
    interrupted: bool = False

    @property
    def counts(self) -> dict[str, int]:
        verdicts = Counter(r.verdict if r.has_report else "crashed" for r in self.results)
        return {key: verdicts.get(key, 0) for key in (*VERDICTS, "crashed")}

    @property
    def failures(self) -> dict[str, int]:
        """Models without a report, by what happened (crashed, timeout, out of memory, ...)."""
        return dict(Counter(r.verdict for r in self.results if not r.has_report))

    @property
    def models_per_hour(self) -> float | None:
        ran = len(self.results) - len(self.resumed & {r.model for r in self.results})
        return ran * 3600 / self.wall_seconds if ran and self.wall_seconds > 0 else None

    def slowest_stages(self) -> list[dict]:
        """Per stage: total seconds over the models run, and the model that took longest in it."""
        rows = []
        for stage in sorted({s for r in self.results for s in r.timings}):
            times = [(r.timings[stage], r.model) for r in self.results if stage in r.timings]
            slowest = max(times)
            rows.append({"stage": stage, "total_seconds": round(sum(t for t, _ in times), 2),
                         "slowest_model": slowest[1], "slowest_seconds": slowest[0]})
        return sorted(rows, key=lambda row: -row["total_seconds"])

    def to_json(self) -> dict:
        return {
            "executor": self.executor, "jobs": self.jobs, "wall_seconds": round(self.wall_seconds, 2),
            "interrupted": self.interrupted, "counts": self.counts, "failures": self.failures,
            "models_per_hour": self.models_per_hour, "slowest_stages": self.slowest_stages(),
            "results": [{**r.to_json(), "resumed": r.model in self.resumed} for r in self.results],
        }


def write_reports(summary: BatchSummary, root: Path) -> dict[str, Path]:
    """batch.json, batch.md and batch.html in the batch folder."""
    paths = {"json": root / "batch.json", "md": root / "batch.md", "html": root / "batch.html"}
    write_json(paths["json"], summary.to_json())
    paths["md"].write_text(markdown(summary))
    paths["html"].write_text(html_page(summary))
    return paths


def backends_of(summary: BatchSummary) -> list[str]:
    seen: dict[str, None] = {}
    for result in summary.results:
        for worst in result.backends:
            seen.setdefault(worst.backend, None)
    return list(seen)


def _num(value: float | None, spec: str = ".2e") -> str:
    return "–" if value is None else format(value, spec)


def _headline(summary: BatchSummary) -> str:
    counts = ", ".join(f"{n} {k}" for k, n in summary.counts.items())
    rate = summary.models_per_hour
    speed = f"{rate:.1f} models/hour" if rate is not None else "no model run (all resumed)"
    resumed = f", {len(summary.resumed)} resumed from earlier runs" if summary.resumed else ""
    stopped = " (interrupted: the rest did not run)" if summary.interrupted else ""
    return (f"{len(summary.results)} models: {counts}{resumed}; {speed} with {summary.jobs} job(s) on the "
            f"{summary.executor} executor, {summary.wall_seconds:.0f} s{stopped}")


def _cells(result: TaskResult, backends: list[str], link) -> list[str]:
    worst = {w.backend: w for w in result.backends}
    stage_times = " / ".join(_num(result.timings.get(s), ".1f") for s in STAGES)
    report = link(result.report_html) if result.report_html else "–"
    return [result.model, result.verdict,
            *(f"{_num(worst[b].max_abs)} / {_num(worst[b].noise_ratio, '.3g')}" if b in worst else "–" for b in backends),
            result.strategy or "–", stage_times, _num(result.peak_rss_mb, ".0f"),
            "–" if result.lint_errors is None else str(result.lint_errors), _num(result.seconds, ".1f"), report]


def _header(backends: list[str]) -> list[str]:
    return ["model", "verdict", *(f"{b} max_abs / noise ratio" for b in backends), "strategy",
            "export / validate / lint / convert / audit s", "peak RSS MiB", "lint errors", "seconds", "report"]


def markdown(summary: BatchSummary) -> str:
    backends = backends_of(summary)
    header = _header(backends)
    lines = ["# Batch report", "", _headline(summary), "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cells(r, backends, lambda p: f"[report]({p})")) + " |" for r in summary.results]
    problems = [r for r in summary.results if r.verdict != "pass"]
    if problems:
        lines += ["", "## Not passed", ""] + [f"- **{r.model}** ({r.verdict}): {r.reason or 'no reason given'}"
                                               for r in problems]
    lines += ["", "## Slowest stages", "", "| stage | total s | slowest model | its s |", "|---|---|---|---|"]
    lines += [f"| {s['stage']} | {s['total_seconds']:.1f} | {s['slowest_model']} | {s['slowest_seconds']:.1f} |"
              for s in summary.slowest_stages()]
    return "\n".join(lines) + "\n"


def html_page(summary: BatchSummary) -> str:
    """One file, no external resources: the tables and an inline stage-time chart."""
    esc = html.escape
    backends = backends_of(summary)
    head = "".join(f"<th>{esc(h)}</th>" for h in _header(backends))
    link = lambda p: f'<a href="{esc(p)}">report.html</a>'  # noqa: E731
    rows = "".join(
        f'<tr class="{esc(r.verdict.replace(" ", "-"))}">'
        + "".join(f"<td>{c if i == len(_header(backends)) - 1 else esc(c)}</td>"
                  for i, c in enumerate(_cells(r, backends, link))) + "</tr>"
        for r in summary.results)
    problems = "".join(f"<li><b>{esc(r.model)}</b> ({esc(r.verdict)}): {esc(r.reason or 'no reason given')}</li>"
                       for r in summary.results if r.verdict != "pass")
    stages = "".join(f"<tr><td>{esc(s['stage'])}</td><td>{s['total_seconds']:.1f}</td><td>{esc(s['slowest_model'])}"
                     f"</td><td>{s['slowest_seconds']:.1f}</td></tr>" for s in summary.slowest_stages())
    chart = _stage_chart(summary)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Batch report</title><style>
body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}}
tr.pass td:nth-child(2){{color:#080}} tr.fail td:nth-child(2){{color:#c00;font-weight:bold}} tr.inconclusive td:nth-child(2){{color:#a60}}
</style></head><body><h1>Batch report</h1><p>{esc(_headline(summary))}</p>
<table><tr>{head}</tr>{rows}</table>
{f"<h2>Not passed</h2><ul>{problems}</ul>" if problems else ""}
<h2>Slowest stages</h2><table><tr><th>stage</th><th>total s</th><th>slowest model</th><th>its s</th></tr>{stages}</table>
{chart}</body></html>
"""


def _stage_chart(summary: BatchSummary) -> str:
    """Stage seconds per model as stacked bars, an inline PNG."""
    timed = [r for r in summary.results if r.timings]
    if not timed:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 0.4 * len(timed) + 1.2))
    left = [0.0] * len(timed)
    for stage in STAGES:
        widths = [r.timings.get(stage, 0.0) for r in timed]
        axes.barh([r.model for r in timed], widths, left=left, label=stage)
        left = [a + b for a, b in zip(left, widths)]
    axes.set_xlabel("seconds")
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f'<h2>Stage times</h2><img alt="stage seconds per model" src="data:image/png;base64,{encoded}">'
