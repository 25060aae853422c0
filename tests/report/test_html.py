"""pipeline/report/html.py: the self-contained report.html, rendered from synthetic report dicts."""
from __future__ import annotations

import base64
import copy
import io
import math
import re

import matplotlib.pyplot as plt
import pytest
from PIL import Image

from pipeline.report.html import render

PNG_URI = 'src="data:image/png;base64,'
SECTION_ORDER = ["comparisons", "histograms", "depth", "localization", "lint", "notes", "artifacts", "timings", "versions"]
BN_FINDING = {
    "rule": "bn_epsilon", "severity": "error", "node": "/layer3/bn/BatchNormalization", "op_type": "BatchNormalization",
    "module": "layer3.bn", "expected": "0.001", "actual": "1e-05",
    "message": "epsilon is 1e-05 but module layer3.bn uses eps=0.001; set the node's epsilon to 0.001",
}


def _comparison(candidate: str, passed: bool, **extra) -> dict:
    return {
        "reference": "pytorch", "candidate": candidate, "output": "logits", "max_abs": 0.5 if not passed else 2e-6,
        "mean_abs": 1e-3, "max_rel": 0.2, "cosine": 0.9991, "ref_max_abs": 12.0, "fraction_beyond_tol": 0.01,
        "atol": 1e-4, "rtol": 1e-4, "passed": passed, "error": None, "p50_abs": 1e-6, "p90_abs": 1e-5,
        "p99_abs": 1e-4, "snr_db": 61.5, "verdict": "pass" if passed else "fail",
        "reason": None if passed else "1.0% of elements beyond tolerance", **extra,
    }


def _histogram(candidate: str) -> dict:
    edges = [10.0 ** e for e in range(-9, 1)]
    return {"reference": "pytorch", "candidate": candidate, "output": "logits", "edges": edges,
            "counts": [5, 40, 900, 3000, 800, 60, 7, 2, 1], "zeros": 123}


def _layer_pair(candidate: str, diverge_at: int | None) -> dict:
    """70 tensors whose error grows with depth; beyond tolerance from `diverge_at` on."""
    tensors = [{
        "index": i, "tensor": f"/layer{i}/out", "node": f"/layer{i}/Conv", "op_type": "Conv", "module": f"layer{i}",
        "max_abs": 1e-7 * 1.2 ** i, "ref_max_abs": 5.0, "exceeds": diverge_at is not None and i >= diverge_at,
    } for i in range(70)]
    return {"reference": "pytorch", "candidate": candidate, "tensors": tensors}


def _localization() -> dict:
    return {
        "reference": "pytorch", "candidate": "tflite_fp16", "found": True, "node": "/layer3/bn/BatchNormalization",
        "op_type": "BatchNormalization", "module": "layer3.bn", "attributes": {"epsilon": 1e-5, "momentum": 0.9},
        "error_in": 2e-6, "error_out": 0.031, "origin": "own",
        "explanation": "error jumps 15000x across this node; its epsilon differs from the module's",
        "lint_findings": [BN_FINDING],
    }


def _full_report() -> dict:
    """A complete report: two backend pairs, one passing and one failing."""
    return {
        "model": "resnet_tiny", "verdict": "fail",
        "verdict_reasons": ["TFLite fp16 logits: 1.0% of elements beyond tolerance"],
        "reference": "pytorch", "route": "torch", "exporter": "dynamo", "opset": 18, "samples": 8,
        "notes": ["layout of 'x' is ambiguous: square input"],
        "timings": {"export": 1.234, "convert": 10.5, "audit": None},
        "versions": {"torch": "2.13.0", "onnx2tf": None},
        "artifacts": [{"path": "model.onnx", "format": "onnx", "sha256": "ab" * 32}],
        "comparisons": [_comparison("onnxruntime", True, top1_agreement=1.0, top5_agreement=1.0),
                        _comparison("tflite_fp16", False, top1_agreement=0.875, top5_agreement=1.0)],
        "histograms": [_histogram("onnxruntime"), _histogram("tflite_fp16")],
        "layers": {"ran": True, "reason": "", "pairs": [_layer_pair("onnxruntime", None), _layer_pair("tflite_fp16", 40)]},
        "localization": [_localization()],
        "lint": {"findings": [BN_FINDING], "counts": {"error": 1, "warning": 0, "info": 0}, "notes": ["2 rules skipped"]},
    }


@pytest.fixture
def report() -> dict:
    return _full_report()


@pytest.fixture
def text_report() -> dict:
    """The full report without the plot sources: for tests of text, which need not pay for matplotlib."""
    return {**_full_report(), "histograms": None, "layers": None}


@pytest.fixture(scope="module")
def page() -> str:
    """The full report rendered once and shared by the read-only tests (plots take ~0.2 s each)."""
    return render(_full_report())


def _section_of(page: str, name: str) -> str:
    return page.split(f'<section id="{name}">')[1].split("</section>")[0]


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(uri) for uri in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_full_report_renders_every_section_in_order(page):
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    positions = [page.index(f'<section id="{name}">') for name in SECTION_ORDER]
    assert page.index("<header>") < positions[0] and positions == sorted(positions)
    assert "not run" not in page


def test_page_loads_nothing_from_the_network(page):
    assert 'src="http' not in page and "<link" not in page and "<script" not in page
    assert "http://" not in page and "https://" not in page


def test_plots_are_embedded_pngs_one_histogram_per_output_and_one_depth_plot_per_pair(page):
    images = _images(page)
    assert page.count(PNG_URI) == len(images) == 3
    assert all(image.startswith(b"\x89PNG\r\n\x1a\n") for image in images)
    histograms = _section_of(page, "histograms")
    assert histograms.count(PNG_URI) == 1 and _section_of(page, "depth").count(PNG_URI) == 2
    assert "<figcaption>output logits: each backend against PyTorch<ul>" in histograms
    assert "<li>ONNX Runtime vs PyTorch: " in histograms and "<li>TFLite fp16 vs PyTorch: " in histograms
    assert plt.get_fignums() == []  # every figure closed


def test_each_output_gets_its_own_histogram_figure(report):
    report["histograms"].append({**_histogram("onnxruntime"), "output": "boxes"})
    histograms = _section_of(render(report), "histograms")
    assert histograms.count(PNG_URI) == 2 and "output boxes: each backend against PyTorch" in histograms
    image = Image.open(io.BytesIO(_images(render(report))[0]))
    single = Image.open(io.BytesIO(_images(render({**report, "histograms": report["histograms"][:1]}))[0]))
    assert image.height > 1.5 * single.height  # a row per pair: the two-pair figure is the taller


@pytest.mark.parametrize("verdict", ["pass", "fail", "inconclusive"])
def test_verdict_badge_text_and_colour_class(text_report, verdict):
    text_report["verdict"] = verdict
    assert f'<span class="badge verdict-{verdict}">{verdict.upper()}</span>' in render(text_report)


def test_unknown_verdict_gets_a_neutral_badge(text_report):
    del text_report["verdict"]
    assert '<span class="badge verdict-unknown">UNKNOWN</span>' in render(text_report)


def test_verdict_reasons_appear_in_the_header(page):
    assert "<li>TFLite fp16 logits: 1.0% of elements beyond tolerance</li>" in page.split("</header>")[0]


def test_text_from_the_report_is_escaped(text_report):
    text_report["model"] = "<script>alert(1)</script>"
    text_report["lint"]["findings"] = [{**BN_FINDING, "message": "pads <b>wrong</b> & odd"}]
    page = render(text_report)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>wrong</b>" not in page and "pads &lt;b&gt;wrong&lt;/b&gt; &amp; odd" in page


def test_missing_sections_say_not_run_instead_of_failing(text_report):
    for key in ("histograms", "timings", "versions", "artifacts"):
        del text_report[key]
    text_report.update(localization=None, lint=None)
    page = render(text_report)
    for what in ("error histograms", "layer-by-layer comparison", "localization", "lint", "timings", "version listing"):
        assert f"{what}: not run" in page
    assert PNG_URI not in page


def test_layers_that_did_not_run_show_the_reason(text_report):
    text_report["layers"] = {"ran": False, "reason": "TFLite has no intermediate outputs", "pairs": []}
    assert "layer-by-layer comparison: not run (TFLite has no intermediate outputs)" in render(text_report)


def test_oldest_report_shape_renders(report):
    """Before verdict reasons, percentiles and top-k existed: only the pass flag and error."""
    kept = ("model", "verdict", "reference", "samples", "notes", "artifacts", "timings", "versions")
    old = {key: report[key] for key in kept}
    old["comparisons"] = [{k: v for k, v in _comparison("keras", False).items()
                           if k not in ("p50_abs", "p90_abs", "p99_abs", "snr_db", "verdict", "reason")}]
    old["comparisons"][0]["error"] = "output shape (1, 10) != (1, 1000)"
    page = render(old)
    assert "fail: output shape (1, 10) != (1, 1000)" in page and 'class="result-fail"' in page
    assert "top-1" not in page  # no pair measured it, so no column


def test_comparison_table_has_metrics_topk_and_reason(page):
    table = _section_of(page, "comparisons")
    for header in ("max_abs", "mean_abs", "p99_abs", "max_rel", "cosine", "SNR dB", "top-1", "top-5", "atol", "rtol"):
        assert f"<th>{header}</th>" in table
    assert "<td>TFLite fp16 vs PyTorch</td>" in table and "<td>87.5%</td>" in table
    assert "fail: 1.0% of elements beyond tolerance" in table and table.count('class="result-pass"') == 1


def test_plots_tolerate_zero_nan_and_inf(report):
    report["histograms"][0].update(edges=[0.0, float("nan"), 1e-6, 1e-3, math.inf], counts=[3, 4, float("nan"), 2])
    report["histograms"][1].update(counts=[0] * 9, zeros=10)  # every element exact
    tensors = report["layers"]["pairs"][1]["tensors"]
    tensors[0]["max_abs"], tensors[1]["max_abs"], tensors[40]["max_abs"] = 0.0, float("nan"), math.inf
    report["layers"]["pairs"][0]["tensors"] = []
    page = render(report)
    assert len(_images(page)) == 3 and plt.get_fignums() == []
    assert "2 elements with non-zero error" in page  # only the overflow bin [1e-3, inf) is plottable
    assert "0 elements with non-zero error; 10 elements with exactly zero error" in page


def test_histogram_keeps_underflow_and_overflow_bins(text_report):
    text_report["histograms"] = [{**_histogram("keras"), "edges": [0.0, 1e-6, 1e-3, math.inf], "counts": [3, 4, 2000]}]
    page = render(text_report)
    assert "2,007 elements with non-zero error; 123 elements with exactly zero error" in page
    assert "<li>Keras vs PyTorch: 2,007 elements" in page


def test_layer_notes_are_shown(text_report):
    text_report["layers"] = {"ran": True, "reason": "", "pairs": [], "notes": ["TF intermediates not compared"]}
    page = render(text_report)
    assert "layer-by-layer comparison: not run (no backend pairs recorded)" in page
    assert "<li>TF intermediates not compared</li>" in _section_of(page, "depth")


def test_depth_plot_caption_names_the_first_divergence(page):
    depth = _section_of(page, "depth")
    assert "first divergence at index 40, /layer40/Conv (Conv, module layer40)" in depth
    assert "70 intermediate tensors compared; none exceeds tolerance." in depth


def test_localization_names_node_module_attributes_and_lint(page):
    section = _section_of(page, "localization")
    assert "<dd>/layer3/bn/BatchNormalization</dd>" in section and "<dd>layer3.bn</dd>" in section
    assert "epsilon=1e-05, momentum=0.9" in section
    assert "2.00e-06 → 0.031" in section and "own: this node introduces the error" in section
    assert "set the node&#x27;s epsilon to 0.001" in section


def test_localization_without_a_divergent_node(text_report):
    text_report["localization"] = [{**_localization(), "found": False, "node": None, "explanation": "all tensors agree"}]
    assert "No divergent node found. all tensors agree" in render(text_report)


def test_lint_table_counts_and_notes(page):
    section = _section_of(page, "lint")
    assert "1 errors, 0 warnings, 0 notes." in section and 'class="severity-error"' in section
    assert "<li>2 rules skipped</li>" in section


def test_artifacts_timings_and_versions(page):
    assert "<td>" + "ab" * 8 + "…</td>" in page and "ab" * 9 not in page
    assert "<td>1.23</td>" in page and "<td>not installed</td>" in page


def test_render_does_not_modify_the_report(text_report):
    before = copy.deepcopy(text_report)
    render(text_report)
    assert text_report == before


@pytest.mark.parametrize("value, text", [(1e-8, "1e-8"), (1e-4, "1e-4"), (0.001, "0.001"), (1.0, "1"), (100.0, "100"),
                                         (1e5, "1e5"), (3e-5, "3e-05")])
def test_log_axes_are_labelled_in_one_plain_style(value, text):
    from pipeline.report.html import _decade

    assert _decade(value) == text


def test_log_axes_spanning_many_decades_drop_their_minor_ticks():
    from matplotlib import ticker

    from pipeline.report.html import _plain_log_labels

    fig, ax = plt.subplots()
    try:
        ax.bar([1e-12, 1e-4], [2, 20], width=[1e-12, 1e-4], align="edge")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_labels(fig)
        assert isinstance(ax.xaxis.get_minor_locator(), ticker.NullLocator)  # eight decades and more
        assert not isinstance(ax.yaxis.get_minor_locator(), ticker.NullLocator)  # one decade: minor ticks kept
        fig.canvas.draw()
        assert all("$" not in label.get_text() for label in ax.get_xticklabels() + ax.get_yticklabels())
    finally:
        plt.close(fig)


def test_a_dynamic_models_extra_shape_gets_a_histogram_row_only_where_it_did_not_pass(report):
    batch3, tall = {"batch": 3}, {"height": 48}
    report["comparisons"] = [_comparison("onnxruntime", True, shape={}), _comparison("onnxruntime", True, shape=batch3),
                             _comparison("onnxruntime", False, shape=tall)]
    report["histograms"] = [{**_histogram("onnxruntime"), "shape": shape} for shape in ({}, batch3, tall)]
    histograms = _section_of(render(report), "histograms")
    assert "<li>ONNX Runtime vs PyTorch: " in histograms and "<li>ONNX Runtime vs PyTorch @ height 48: " in histograms
    assert "@ batch 3" not in histograms
    assert "Not drawn: 1 comparison that passed at an extra shape" in histograms


def test_a_dynamic_models_comparison_rows_name_their_extra_shape(report):
    report["comparisons"] = [_comparison("onnxruntime", True, shape={}), _comparison("onnxruntime", True, shape={"N": 3})]
    table = _section_of(render(report), "comparisons")
    assert "ONNX Runtime vs PyTorch @ N 3" in table
    assert table.count("ONNX Runtime vs PyTorch") == 2, "the example's row has no suffix, the extra shape's has its own"
