"""MODEL_CARD.md: the manifest's content for people."""
from __future__ import annotations

from pathlib import Path

from pipeline.convert.fp16_cure import PATCHED

CARD = "MODEL_CARD.md"


def write(root: Path, manifest: dict) -> Path:
    path = root / CARD
    path.write_text(render(manifest))
    return path


def render(manifest: dict) -> str:
    verdict = manifest["verdict"]
    lines = [f"# Model card: {manifest['model']}", "",
             f"**Verdict: {verdict['overall'].upper()}** (reference: {manifest['reference']}, route: {manifest['route']})", ""]
    lines += [f"- {reason}" for reason in verdict["reasons"]]
    lines += _models(manifest["models"])
    lines += _signature(manifest["signature"])
    lines += _dynamic(manifest.get("dynamic"))
    lines += _preprocessing(manifest.get("preprocessing"))
    lines += _quantization(manifest.get("quantization"))
    lines += _tflite(manifest.get("tflite"))
    lines += _provenance(manifest)
    lines += ["", "Check these files with `python -m pipeline verify <this folder>`: it re-checks every sha256 in "
              "manifest.json and reruns the audit on the shipped models from the saved inputs (no PyTorch needed).", ""]
    return "\n".join(lines)


def _models(models: list[dict]) -> list[str]:
    lines = ["", "## Models", "", "| file | format | precision | size (bytes) | audit | shipped | sha256 |",
             "|---|---|---|---|---|---|---|"]
    for m in models:
        lines.append(f"| `{m['path']}` | {m['format']} | {m['precision']} | {m['size']} | {m['verdict']} | "
                     f"{'yes' if m['shipped'] else 'no'} | `{m['sha256'][:16]}…` |")
    problems = [f"- `{m['path']}` ({m['backend']}): {error}" for m in models for error in m["errors"]]
    return lines + ([""] + problems if problems else [])


def _signature(signature: dict) -> list[str]:
    lines = ["", "## Signature", "", "| direction | name | shape | dtype | TF name | TF shape | layout |",
             "|---|---|---|---|---|---|---|"]
    for direction in ("inputs", "outputs"):
        for t in signature[direction]:
            lines.append(f"| {direction[:-1]} | `{t['name']}` | {t['shape']} | {t['dtype']} | `{t['tf_name']}` | "
                         f"{t['tf_shape']} | {t['layout']} |")
    return lines


def _dynamic(dynamic: dict | None) -> list[str]:
    """Which dimensions every shipped model takes at any size, their constraints, and the shapes audited."""
    if not dynamic:
        return []
    lines = ["", "## Dynamic dimensions", "", "| name | inputs (axis) | min | max | multiple of | example |", "|---|---|---|---|---|---|"]
    for name, c in dynamic["dims"].items():
        where = ", ".join(f"`{i}` ({a})" for i, axes in dynamic["inputs"].items() for a, n in axes.items() if n == name)
        lines.append(f"| {name} | {where} | {c['min']} | {c['max'] if c['max'] is not None else 'none'} | {c['multiple_of']} | {c['example']} |")
    audited = "; ".join(", ".join(f"{n} {v}" for n, v in shape.items()) for shape in dynamic["audited_shapes"])
    return lines + ["", f"Audited (and rerun by `verify`) at: {audited}. The signature's shapes above are the example's."]


def _preprocessing(preprocess: dict | None) -> list[str]:
    if not preprocess:
        return ["", "## Preprocessing", "", "None configured: feed tensors exactly as the signature says."]
    return ["", "## Preprocessing", ""] + [f"- {key}: {value}" for key, value in preprocess.items()]


def _quantization(quantization: dict | None) -> list[str]:
    if not quantization:
        return []
    lines = ["", "## Quantization", ""]
    if quantization.get("error"):
        return lines + [f"not measured: {quantization['error']}"]
    request = quantization.get("int8")
    if not request:
        return lines + [quantization.get("note") or "no int8 model"]
    lines.append(f"int8 {request['mode']}, calibrated on {request['origin']}" if request.get("samples") else f"int8 {request['mode']}")
    lines += ["", "| file | against | output | max_abs | mean_abs | SNR (dB) | top-1 | top-5 | audit |", "|---|---|---|---|---|---|---|---|---|"]
    for file, entry in request["files"].items():
        for against in ("vs_reference", "vs_tflite_fp32"):
            for output, m in (entry.get(against) or {}).items():
                if output == "error":
                    lines.append(f"| `{file}` | {against[3:]} | - | could not run: {m} | | | | | {entry['audit_verdict']} |")
                    continue
                lines.append(f"| `{file}` | {against[3:]} | {output} | {_num(m['max_abs'])} | {_num(m['mean_abs'])} | "
                             f"{_num(m['snr_db'])} | {_num(m['top1_agreement'])} | {_num(m['top5_agreement'])} | {entry['audit_verdict']} |")
    lines += _float_layers(request)
    return lines + ([f"", quantization["note"]] if quantization.get("note") else [])


def _float_layers(request: dict) -> list[str]:
    """The layers the selective int8 file keeps in float (int8.json)."""
    if not request.get("selective"):
        return []
    kept = "; ".join(f"{', '.join(layer['onnx_nodes']) or layer['tensor']} (module {layer['module'] or 'none'})"
                     for layer in request["float_layers"])
    return ["", f"`{request['selective']}` keeps {len(request['float_layers'])} layer(s) in float: {kept}."]


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _tflite(tflite: dict | None) -> list[str]:
    if not tflite or tflite.get("error"):
        return ["", "## TFLite operators", "", f"not read: {tflite['error']}"] if tflite else []
    if not tflite["files"]:
        return []
    lines = ["", "## TFLite operators", "", "| file | standard interpreter | Select TF / custom ops | builtin ops |", "|---|---|---|---|"]
    for file, entry in tflite["files"].items():
        special = entry["select_tf_ops"] + entry["custom_ops"]
        lines.append(f"| `{file}` | {'yes' if entry['standard'] else 'no'} | {', '.join(special) or '-'} | "
                     f"{', '.join(entry['builtin_ops'])} |")
    return lines + _builtin_route(tflite.get("builtin_route")) + _fp16_cure(tflite.get("fp16_cure"))


def _fp16_cure(cure: dict | None) -> list[str]:
    """One line per constant the fp16 cure changed, and whether the cured file is the one shipped."""
    if not cure:
        return []
    how = " (raised in the file itself, no second conversion)" if cure.get("method") == PATCHED else ""
    shipped = f"is the cured file{how}" if cure["shipped"] else f"is the uncured file: {cure['reason']}"
    lines = ["", f"fp16 cure: `model_float16.tflite` {shipped}."]
    return lines + [f"- {c['op_type']} `{c['node']}` ({c['module'] or 'module not named'}) {c['constant']}: "
                    f"{c['old']:.3g} -> {c['new']:.4g}" for c in cure["changes"]]


def _builtin_route(route: dict | None) -> list[str]:
    if not route:
        return []
    flex = sorted({op for ops in route["select_tf_ops"].values() for op in ops})
    lines = [""]
    if route["pseudo_ops"]:
        avoided = [file for file, entry in route["files"].items() if entry["standard"]]
        lines.append(f"Select TF ops {flex}: onnx2tf's builtin replacements {route['pseudo_ops']} were tried ("
                     + "; ".join(route["approximations"]) + f"); files now on builtin ops only: {avoided or 'none'}.")
    if route["no_builtin_route"]:
        lines.append(f"No builtin route for {route['no_builtin_route']}: those files run only with the Flex delegate.")
    for file, measured in (route.get("measured") or {}).items():
        for against, outputs in measured.items():
            if against == "error":
                continue
            for output, m in outputs.items():
                lines.append(f"- `{file}` {against.replace('_', ' ')} '{output}': max_abs {_num(m['max_abs'])}, "
                             f"SNR {_num(m['snr_db'])} dB")
    return lines


def _provenance(manifest: dict) -> list[str]:
    source = manifest["source"]
    lint = manifest.get("lint")
    lines = ["", "## Provenance", "",
             f"- source: {source['kind']} `{source['path']}`" + (f", sha256 `{source['sha256']}`" if source.get("sha256") else "")]
    if lint:
        counts = lint["counts"]
        lines.append(f"- lint: {counts['error']} errors, {counts['warning']} warnings, {counts['info']} notes")
    lines += [f"- {name} {version}" for name, version in manifest["versions"].items()]
    return lines
