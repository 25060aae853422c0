"""Stage 5, report: report.html, one self-contained page for people who read the audit.

The page needs no network: styles are inline and every plot is a base64 PNG, so it can
be mailed, attached to a CI run or opened offline. It reads only the report dict
(report.json), and tolerates older reports that lack newer keys by saying "not run".
"""
from __future__ import annotations

import base64
import contextlib
import io
import math
from typing import Any, Iterator

import matplotlib

matplotlib.use("Agg")  # the report stage runs headless (CI, ssh); never open a window
import matplotlib.pyplot as plt  # noqa: E402  (must follow matplotlib.use)
from matplotlib import ticker  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pipeline.audit.noise import NOISE_RATIO_BOUND as NOISE_BOUND  # noqa: E402
from pipeline.names import label as backend_label  # noqa: E402
from pipeline.report import sections as feature_sections  # noqa: E402  (one module per later stage's section)
from pipeline.report.blocks import definitions as _definitions, e as _e, figure as _figure, items as _items  # noqa: E402
from pipeline.report.blocks import not_run as _not_run, section as _section, table as _table  # noqa: E402
from pipeline.report.fmt import fmt_number as _fmt  # noqa: E402  (same number format as report.md)

LOG_FLOOR = 1e-12  # log axes cannot show 0; exact-zero errors are drawn at this floor
FIGSIZE = (8.5, 3.2)
DPI = 90  # small PNGs keep the page light; 90 dpi is still sharp at this size
VERDICTS = ("pass", "fail", "inconclusive")
PASS_COLOUR, FAIL_COLOUR, REF_COLOUR = "#1f6feb", "#cf222e", "#8c959f"
ORIGIN_TEXT = {
    "own": "own: this node introduces the error (its inputs still agree)",
    "inherited": "inherited: the error was already present in this node's inputs",
    "span": "span: the error appears between this node and the node that diverged, whose tensors were not compared",
}
FINDING_HEADERS = ["severity", "rule", "node", "op", "module", "expected", "actual", "message"]
OPTIONAL_METRICS = (("top-1", "top1_agreement"), ("top-5", "top5_agreement"))
SEVERITIES = ("error", "warning", "info")

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #1f2328; }
h1 { margin: 0 .6rem 0 0; display: inline; font-size: 1.6rem; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; margin-top: 2rem; }
header { margin-bottom: 1rem; }
.badge { display: inline-block; padding: .15rem .7rem; border-radius: 1rem; color: #fff; font-weight: 700; vertical-align: .2rem; }
.verdict-pass { background: #1a7f37; }
.verdict-fail { background: #cf222e; }
.verdict-inconclusive { background: #bf8700; }
.verdict-unknown { background: #6e7781; }
.meta, .not-run, figcaption { color: #59636e; }
.not-run { font-style: italic; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border: 1px solid #d0d7de; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
tr.result-fail td, tr.severity-error td { background: #ffebe9; }
tr.result-inconclusive td, tr.severity-warning td { background: #fff8c5; }
tr.severity-info td { color: #59636e; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; border: 1px solid #d0d7de; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; }
dt { font-weight: 600; }
dd { margin: 0; }
"""


def render(report: dict) -> str:
    """The whole report as one HTML page that loads nothing from the network."""
    sections = [
        _header(report), _comparison_section(report), _histogram_section(report), _depth_section(report),
        _localization_section(report), *feature_sections.html(report), _lint_section(report), _notes_section(report),
        _artifacts_section(report), _timings_section(report), _versions_section(report),
    ]
    title = _e(f"Conversion report: {report.get('model') or 'unnamed model'}")
    head = f'<head>\n<meta charset="utf-8">\n<title>{title}</title>\n<style>{CSS}</style>\n</head>'
    return f'<!DOCTYPE html>\n<html lang="en">\n{head}\n<body>\n' + "\n".join(sections) + "\n</body>\n</html>\n"


# --- labels (the HTML building blocks are in blocks.py, shared with report/sections/) ---

def _label(backend: str | None) -> str:
    return backend_label(backend) if backend else "?"


def _pair(entry: dict) -> str:
    """'TFLite fp16 vs PyTorch', plus the output name when the entry has one."""
    pair = f"{_label(entry.get('candidate'))} vs {_label(entry.get('reference'))}"
    return f"{pair}, output {entry['output']}" if entry.get("output") else pair


# --- header and comparison table ---------------------------------------------

def _header(report: dict) -> str:
    verdict = str(report.get("verdict") or "unknown")
    badge_class = verdict if verdict in VERDICTS else "unknown"
    reasons = (report.get("verdict_reasons") or []) + [f"warning: {w}" for w in report.get("warnings") or []]
    meta = [f"reference: {_label(report.get('reference'))}", f"route: {report.get('route') or 'n/a'}",
            f"exporter: {report.get('exporter') or 'n/a'}", f"opset: {report.get('opset') or 'n/a'}",
            f"samples: {report.get('samples') if report.get('samples') is not None else 'n/a'}"]
    return (f"<header>\n<h1>{_e(report.get('model') or 'unnamed model')}</h1>"
            f'<span class="badge verdict-{badge_class}">{_e(verdict.upper())}</span>\n'
            f'<p class="meta">{_e(" · ".join(meta))}</p>\n' + (_items(reasons) if reasons else "") + "\n</header>")


def _result(comparison: dict) -> tuple[str, str]:
    """(verdict, text) of one comparison; older reports have only `passed` and `error`."""
    verdict = comparison.get("verdict") or ("pass" if comparison.get("passed") else "fail")
    detail = comparison.get("reason") or comparison.get("error")
    return verdict, f"{verdict}: {detail}" if detail else verdict


def _percent(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.1%}"


def _tol(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"


def _comparison_row(c: dict, optional: list[str]) -> list[str]:
    return [
        _row_title(c), c.get("output"), _fmt(c.get("max_abs")), _ratio_text(c.get("noise_ratio")),
        _fmt(c.get("oracle_error")), _fmt(c.get("noise_floor")), _fmt(c.get("mean_abs")),
        _fmt(c.get("p99_abs")), _fmt(c.get("max_rel")), _fmt(c.get("cosine")), _fmt(c.get("snr_db")),
        *[_percent(c.get(key)) for key in optional], _tol(c.get("atol")), _tol(c.get("rtol")), c.get("rule", "tolerance"),
        _result(c)[1],
    ]


def _ratio_text(value: float | None) -> str:
    return "n/a" if value is None or not _finite(value) else f"{value:.3g}x"


def _comparison_section(report: dict) -> str:
    comparisons = report.get("comparisons")
    if not comparisons:
        return _section("comparisons", "Comparisons", _not_run("comparisons"))
    # top-k agreement only means something for classifiers; hide the columns when no pair has it
    optional = [(h, k) for h, k in OPTIONAL_METRICS if any(c.get(k) is not None for c in comparisons)]
    headers = ["pair", "output", "max_abs", "x noise floor", "error vs oracle", "noise floor", "mean_abs", "p99_abs",
               "max_rel", "cosine", "SNR dB", *[h for h, _ in optional], "atol", "rtol", "rule", "result"]
    rows = [_comparison_row(c, [k for _, k in optional]) for c in comparisons]
    classes = [f"result-{_result(c)[0]}" for c in comparisons]
    return _section("comparisons", "Comparisons", _table(headers, rows, classes) + _oracle_text(report.get("oracle")))


def _oracle_text(oracle: dict | None) -> str:
    """The verdict rule in one paragraph: the oracle, the floors and the bound."""
    if not oracle:
        return ""
    if not oracle.get("floors"):
        return f'<p class="meta">No float64 oracle: {_e(oracle.get("reason"))}.</p>'
    floors = ", ".join(f"{_e(name)} {_fmt(value)}" for name, value in oracle["floors"].items())
    return (f'<p class="meta">Each float32 backend\'s error against the oracle ({_e(oracle.get("reason"))}) must stay '
            f'within {oracle.get("bound", NOISE_BOUND):g}× the float32 noise floor ({_e(oracle.get("floor_source"))}: '
            f'{floors}). {_e(oracle.get("lower_precision", ""))}</p>')


# --- plots -------------------------------------------------------------------

@contextlib.contextmanager
def _axes() -> Iterator[tuple[Figure, Axes]]:
    """A fresh figure that is closed even if plotting fails, so long runs do not pile up figures."""
    # Fixed margins, not layout="constrained": the constrained solver cost more than the drawing
    # (0.39 s against 0.15 s per figure), and these figures all have one axes of one size.
    fig, ax = plt.subplots(figsize=FIGSIZE)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.17, top=0.89)
    try:
        yield fig, ax
    finally:
        plt.close(fig)


ROW_INCHES = 1.25  # one histogram row


@contextlib.contextmanager
def _rows(count: int) -> Iterator[tuple[Figure, list[Axes]]]:
    """A fresh figure of `count` stacked axes sharing the x axis, closed even if plotting fails."""
    height = 0.9 + ROW_INCHES * count
    fig, axes = plt.subplots(count, 1, figsize=(FIGSIZE[0], height), sharex=True, squeeze=False)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.6 / height, top=1 - 0.3 / height, hspace=0.55)
    try:
        yield fig, list(axes[:, 0])
    finally:
        plt.close(fig)


def _png(fig: Figure) -> str:
    _plain_log_labels(fig)
    buffer = io.BytesIO()
    # no Software metadata: keeps the bytes reproducible and free of URLs
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


MINOR_TICKS_UP_TO_DECADES = 3


def _plain_log_labels(fig: Figure) -> None:
    """Log-axis ticks labelled as plain text ("1e-7"), not mathtext: parsing mathtext was a third of the
    report's time on a small model, for the same ticks."""
    for ax in fig.axes:
        for axis, limits in ((ax.xaxis, ax.get_xlim), (ax.yaxis, ax.get_ylim)):
            if axis.get_scale() == "log":
                axis.set_major_formatter(ticker.FuncFormatter(_decade))
                axis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False))
                low, high = sorted(limits())  # the limits after autoscaling
                if low > 0 and math.log10(high / low) > MINOR_TICKS_UP_TO_DECADES:
                    axis.set_minor_locator(ticker.NullLocator())  # eight unlabelled ticks a decade: clutter, and drawing time


def _decade(value: float, _position=None) -> str:
    """1e-8, 0.001, 1, 100, 1e5: one style for every power of ten."""
    if value <= 0:
        return f"{value:g}"
    exponent = round(math.log10(value))
    if not math.isclose(value, 10.0 ** exponent, rel_tol=1e-9):
        return f"{value:g}"
    return f"{10.0 ** exponent:g}" if -3 <= exponent <= 3 else f"1e{exponent}"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _plain(text: str, limit: int = 48) -> str:
    """Text safe for a matplotlib label: '$' would start mathtext, long node names would swamp the legend."""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def _histogram_bins(hist: dict) -> list[tuple[float, float, float]]:
    """(left, right, count) per plottable bin: a zero left edge moves to the log floor, an open-ended
    overflow bin (right edge inf) is drawn one decade wide, and bins with NaN edges or counts are dropped."""
    edges, counts = hist.get("edges") or [], hist.get("counts") or []
    bins = []
    for lo, hi, n in zip(edges, edges[1:], counts):
        if not (_finite(lo) and _finite(n) and (_finite(hi) or hi == math.inf)):
            continue
        lo = max(lo, LOG_FLOOR)
        hi = lo * 10 if hi == math.inf else hi
        if hi > lo:
            bins.append((lo, hi, n))
    return bins


def _steps(bins: list[tuple[float, float, float]]) -> tuple[list[float], list[float]]:
    """The bins as one step outline (counts, edges), a gap between two bins drawn at zero: one patch to
    draw instead of a bar per bin (a third of a histogram's drawing time)."""
    counts, edges = [], [bins[0][0]]
    for lo, hi, n in bins:
        if lo != edges[-1]:
            counts.append(0.0)
            edges.append(lo)
        counts.append(n)
        edges.append(hi)
    return counts, edges


def _histogram_png(hists: list[dict], atols: dict) -> str:
    """One figure per output: a row per backend pair, on one shared log axis, so the pairs read side by side
    (and the figure draws its axis labels once: 0.15 s for five pairs against 0.28 s as five figures)."""
    with _rows(len(hists)) as (fig, axes):
        plotted = [_histogram_row(ax, hist, atols.get(_key(hist))) for ax, hist in zip(axes, hists)]
        if not any(plotted):
            axes[0].set_xlim(LOG_FLOOR, 1.0)
        axes[-1].set_xlabel("|error| = |candidate − reference| per element (log scale)")
        axes[len(axes) // 2].set_ylabel("elements")
        return _png(fig)


def _histogram_row(ax: Axes, hist: dict, atol: float | None) -> bool:
    """One pair's histogram on `ax`; False when it has nothing to plot."""
    bins = _histogram_bins(hist)
    positive = [n for _, _, n in bins if n > 0]
    if bins:
        counts, edges = _steps(bins)
        ax.stairs(counts, edges, fill=True, color=PASS_COLOUR)
    ax.set_xscale("log")
    title = _plain(_row_title(hist), limit=80)
    if not positive:
        ax.set_ylim(0, 1)
        ax.text(0.5, 0.5, "no finite non-zero errors to plot", transform=ax.transAxes, ha="center", va="center")
    elif max(positive) / min(positive) > 1e3:  # a few outliers beside millions of elements: show both
        ax.set_yscale("log")
    if _finite(atol) and atol > 0:
        ax.axvline(atol, color=FAIL_COLOUR, linestyle="--", linewidth=1)
        title += f"   (dashed line: atol {atol:g})"
    ax.set_title(title, fontsize="small", loc="left")
    return bool(positive)


def _histogram_caption(hist: dict) -> str:
    nonzero = sum(n for _, _, n in _histogram_bins(hist))
    zeros = hist.get("zeros")
    exact = ("zero count not recorded" if not _finite(zeros)
             else f"{zeros:,.0f} elements with exactly zero error (not on the log axis)")
    return f"{nonzero:,.0f} elements with non-zero error; {exact}."


def _histogram_section(report: dict) -> str:
    comparisons = report.get("comparisons") or []
    histograms = _drawn(report.get("histograms") or [], comparisons)
    if not histograms:
        return _section("histograms", "Error histograms", _not_run("error histograms"))
    atols = {_key(c): c.get("atol") for c in comparisons}
    groups: dict[tuple, list[dict]] = {}
    for hist in histograms:
        groups.setdefault((hist.get("reference"), hist.get("output")), []).append(hist)
    figures = [_figure(f"{'output ' + str(output) if output else 'Output'}: each backend against {_label(reference)}",
                       _histogram_png(hists, atols), [f"{_row_title(h)}: {_histogram_caption(h)}" for h in hists])
               for (reference, output), hists in groups.items()]
    skipped = len(report.get("histograms") or []) - len(histograms)
    note = (f"<p>Not drawn: {skipped} comparison{'s' if skipped != 1 else ''} that passed at an extra shape (their "
            "histograms are in report.json's <code>histograms</code>, each with its <code>shape</code>).</p>" if skipped else "")
    return _section("histograms", "Error histograms", "\n".join(figures) + note)


def _drawn(histograms: list[dict], comparisons: list[dict]) -> list[dict]:
    """The histograms drawn: every one at the example shape, and at an extra shape of a dynamic model only where
    its comparison did not pass (drawing every shape's row tripled the figure's time on a 3-shape audit, for
    rows that read like the example's)."""
    passed = {_key(c) for c in comparisons if c.get("verdict", "pass" if c.get("passed") else "fail") == "pass"}
    return [h for h in histograms if not h.get("shape") or _key(h) not in passed]


def _row_title(hist: dict) -> str:
    """'TFLite fp32 vs PyTorch', with ' @ batch 3' for an extra shape of a dynamic model (a histogram's row, a
    comparison table's pair)."""
    shape = hist.get("shape")
    return _pair({**hist, "output": None}) + (" @ " + ", ".join(f"{n} {s}" for n, s in shape.items()) if shape else "")


def _key(entry: dict) -> tuple:
    shape = entry.get("shape") or {}
    return entry.get("reference"), entry.get("candidate"), entry.get("output"), tuple(sorted(shape.items()))


def _first_divergence(tensors: list[dict]) -> dict | None:
    """The earliest tensor in node order beyond tolerance (even if its error is NaN)."""
    beyond = [t for t in tensors if t.get("exceeds") and t.get("index") is not None]
    return min(beyond, key=lambda t: t["index"]) if beyond else None


def _depth_points(tensors: list[dict], key: str) -> list[tuple[int, float, bool]]:
    points = [(t["index"], max(t[key], LOG_FLOOR), bool(t.get("exceeds")))
              for t in tensors if t.get("index") is not None and _finite(t.get(key))]
    return sorted(points)


def _scatter(ax: Axes, points: list[tuple[int, float, bool]], exceeds: bool, label: str) -> None:
    chosen = [(x, y) for x, y, beyond in points if beyond == exceeds]
    if chosen:
        ax.scatter([x for x, _ in chosen], [y for _, y in chosen], s=22 if exceeds else 12, zorder=3,
                   color=FAIL_COLOUR if exceeds else PASS_COLOUR, label=label)


def _mark_non_finite(ax: Axes, tensors: list[dict], errors: list[tuple[int, float, bool]]) -> None:
    """Inf max_abs (NaN/inf outputs or a shape mismatch) cannot sit on a log axis: mark them along the top."""
    indices = [t["index"] for t in tensors if t.get("index") is not None and t.get("max_abs") == math.inf]
    if indices:
        top = max((y for _, y, _ in errors), default=1.0) * 10
        ax.scatter(indices, [top] * len(indices), marker="x", color=FAIL_COLOUR, zorder=3,
                   label="non-finite or shape mismatch")


def _noise_band(ax: Axes, tensors: list[dict]) -> bool:
    """The float32 noise band (PyTorch float32 against the oracle) and the bound above it; False if not judged so."""
    floors = _depth_points(tensors, "noise_floor")
    if not floors:
        return False
    xs, ys = [p[0] for p in floors], [p[1] for p in floors]
    ax.fill_between(xs, [LOG_FLOOR] * len(xs), ys, color="#d0d7de", alpha=0.6, step="mid", label="float32 noise floor")
    bound = NOISE_BOUND
    ax.plot(xs, [y * bound for y in ys], color=FAIL_COLOUR, linestyle=":", linewidth=1, label=f"{bound:g}x the floor (bound)")
    return True


def _depth_png(pair: dict) -> str:
    tensors = pair.get("tensors") or []
    errors, reference = _depth_points(tensors, "max_abs"), _depth_points(tensors, "ref_max_abs")
    first = _first_divergence(tensors)
    with _axes() as (fig, ax):
        if reference:
            ax.plot([p[0] for p in reference], [p[1] for p in reference], color=REF_COLOUR, linestyle=":",
                    linewidth=1, label="max |reference| (scale)")
        if errors:
            ax.plot([p[0] for p in errors], [p[1] for p in errors], color=REF_COLOUR, linewidth=1, zorder=2)
        judged = _noise_band(ax, tensors)
        _scatter(ax, errors, False, "within the noise bound" if judged else "within tolerance")
        _scatter(ax, errors, True, "beyond the noise bound" if judged else "beyond tolerance")
        _mark_non_finite(ax, tensors, errors)
        if first is not None:
            ax.axvline(first["index"], color=FAIL_COLOUR, linestyle="--", linewidth=1,
                       label=_plain(f"first divergence: {first.get('node') or first.get('tensor') or '?'}"))
        if not tensors:
            ax.text(0.5, 0.5, "no intermediate tensors recorded", transform=ax.transAxes, ha="center", va="center")
        ax.set_yscale("log")
        ax.set_xlabel("node order index (depth in the graph); error = |candidate − reference|")
        if _depth_points(tensors, "noise_floor"):
            ax.set_xlabel("node order index (depth in the graph); error = |candidate − float64 oracle|")
        ax.set_ylabel("max |error| per tensor (log scale)")
        ax.set_title(_plain(_pair(pair), limit=80), fontsize="medium")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")  # outside: never hides points
        return _png(fig)


def _depth_caption(pair: dict) -> str:
    tensors = pair.get("tensors") or []
    first = _first_divergence(tensors)
    if first is None:
        limit = "the noise bound" if any(_finite(t.get("noise_floor")) for t in tensors) else "tolerance"
        return f"{len(tensors)} intermediate tensors compared; none exceeds {limit}."
    where = f"{first.get('node') or '?'} ({first.get('op_type') or '?'}, module {first.get('module') or 'unknown'})"
    return (f"{len(tensors)} intermediate tensors compared; first divergence at index {first['index']}, "
            f"{where}, max_abs {_fmt(first.get('max_abs'))}.")


def _depth_section(report: dict) -> str:
    layers = report.get("layers")
    title = "Error vs depth"
    if not layers or not layers.get("ran"):
        return _section("depth", title, _not_run("layer-by-layer comparison", (layers or {}).get("reason")))
    pairs = layers.get("pairs") or []
    figures = [_figure(_pair(p), _depth_png(p), _depth_caption(p)) for p in pairs]
    if not figures:
        figures = [_not_run("layer-by-layer comparison", "no backend pairs recorded")]
    notes = _items(layers["notes"]) if layers.get("notes") else ""
    return _section("depth", title, "\n".join([*figures, notes]))


# --- localization and lint ---------------------------------------------------

def _attributes(attributes: dict | None) -> str:
    return ", ".join(f"{name}={value}" for name, value in (attributes or {}).items()) or "none recorded"


def _findings_table(findings: list[dict]) -> str:
    rows = [[f.get(k) for k in ("severity", "rule", "node", "op_type", "module", "expected", "actual", "message")]
            for f in findings]
    return _table(FINDING_HEADERS, rows, [f"severity-{f.get('severity')}" for f in findings])


def _localization_entry(entry: dict) -> str:
    heading = f"<h3>{_e(_pair(entry))}</h3>"
    if not entry.get("found"):
        explanation = _e(entry.get("explanation") or "")
        return f'<div class="localization">{heading}\n<p>No divergent node found. {explanation}</p>\n</div>'
    terms = [
        ("first divergent node", entry.get("node")), ("op type", entry.get("op_type")),
        ("PyTorch module", entry.get("module") or "unknown (attribution failed)"),
        ("attributes", _attributes(entry.get("attributes"))),
        ("error in → error out", f"{_fmt(entry.get('error_in'))} → {_fmt(entry.get('error_out'))}"),
        ("origin", ORIGIN_TEXT.get(entry.get("origin") or "", "unknown")), ("explanation", entry.get("explanation")),
    ]
    findings = entry.get("lint_findings") or []
    linked = _findings_table(findings) if findings else "<p>No lint finding on this node.</p>"
    return f'<div class="localization">{heading}\n{_definitions(terms)}\n<h4>Linked lint findings</h4>\n{linked}\n</div>'


def _localization_section(report: dict) -> str:
    entries = report.get("localization")
    if entries is None:
        return _section("localization", "Localization", _not_run("localization"))
    if not entries:
        return _section("localization", "Localization", "<p>No diverging pair needed localizing.</p>")
    return _section("localization", "Localization", "\n".join(_localization_entry(e) for e in entries))


def _lint_section(report: dict) -> str:
    lint = report.get("lint")
    if lint is None:
        return _section("lint", "Lint", _not_run("lint"))
    findings = lint.get("findings") or []
    counts = {level: sum(f.get("severity") == level for f in findings) for level in SEVERITIES}
    counts |= lint.get("counts") or {}
    summary = "<p>" + _e("{error} errors, {warning} warnings, {info} notes.".format(**counts)) + "</p>"
    table = _findings_table(findings) if findings else "<p>No findings.</p>"
    notes = _items(lint["notes"]) if lint.get("notes") else ""
    return _section("lint", "Lint", "\n".join([summary, table, notes]))


# --- notes, artifacts, timings, versions --------------------------------------

def _notes_section(report: dict) -> str:
    notes = report.get("notes")
    return _section("notes", "Notes", _items(notes) if notes else "<p>No notes.</p>")


def _artifacts_section(report: dict) -> str:
    artifacts = report.get("artifacts")
    if not artifacts:
        return _section("artifacts", "Artifacts", _not_run("artifact listing"))
    rows = [[a.get("path"), a.get("format"), (a.get("sha256") or "n/a")[:16] + ("…" if a.get("sha256") else "")]
            for a in artifacts]
    return _section("artifacts", "Artifacts", _table(["path", "format", "sha256"], rows))


def _timings_section(report: dict) -> str:
    timings = report.get("timings")
    if not timings:
        return _section("timings", "Timings", _not_run("timings"))
    rows = [[stage, f"{seconds:.2f}" if _finite(seconds) else "n/a"] for stage, seconds in timings.items()]
    return _section("timings", "Timings", _table(["stage", "seconds"], rows))


def _versions_section(report: dict) -> str:
    versions = report.get("versions")
    if not versions:
        return _section("versions", "Versions", _not_run("version listing"))
    rows = [[name, version or "not installed"] for name, version in versions.items()]
    return _section("versions", "Versions", _table(["package", "version"], rows))
