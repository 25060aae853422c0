"""pipeline/config.py: YAML configs, their schema errors, and resolving MODEL."""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from pipeline.config import CONFIGS_DIR, load_config, resolve_source
from pipeline.errors import ConfigError, UsageError

MINIMAL = """\
model: pipeline.zoo.seed:build
inputs:
  - name: x
    shape: [1, 3, 8, 8]
"""


def write_yaml(tmp_path: Path, text: str, name: str = "tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def config_error(path: Path, message: str) -> str:
    """The pattern for a ConfigError about `path`: the path itself is escaped."""
    return re.escape(f"{path}: ") + message


# --- loading a valid config -------------------------------------------------

def test_valid_config_loads_with_defaults(tmp_path):
    path = write_yaml(tmp_path, MINIMAL)
    source = load_config(path)
    assert source.kind == "config"
    assert source.path == path.resolve()
    assert source.base_dir == path.resolve().parent
    assert source.resolve("models/net.py") == path.resolve().parent / "models" / "net.py"
    assert source.resolve("/opt/w.pt") == Path("/opt/w.pt"), "an absolute path as written"
    config = source.config
    assert config.model == "pipeline.zoo.seed:build"
    (spec,) = config.inputs
    assert (spec.name, spec.shape, spec.dtype, spec.low, spec.high) == ("x", [1, 3, 8, 8], "float32", 0.0, 1.0)
    assert (config.seed, config.samples, config.exporter, config.opset) == (0, 4, "auto", None)
    assert config.checkpoint is None and config.outputs is None and config.tolerances == {}


def test_valid_config_keeps_every_optional_key(tmp_path):
    path = write_yaml(tmp_path, """\
        name: custom
        model: pkg.module:build
        model_args: {channels: 8}
        checkpoint: weights.safetensors
        inputs:
          - {name: image, shape: [2, 3, 4, 4], dtype: float16, low: -0.5, high: 0.5}
          - {name: ids, shape: [2, 5], dtype: int64, low: 0, high: 10}
        outputs: [logits]
        seed: 7
        samples: 2
        opset: 18
        exporter: torchscript
        tolerances:
          tflite_fp16: {atol: 0.05, rtol: 0.01}
        """)
    source = load_config(path)
    config = source.config
    assert source.name == "custom"
    assert config.model_args == {"channels": 8}
    assert config.checkpoint == "weights.safetensors"
    assert [(s.name, s.shape, s.dtype) for s in config.inputs] == [("image", [2, 3, 4, 4], "float16"), ("ids", [2, 5], "int64")]
    assert (config.inputs[0].low, config.inputs[0].high) == (-0.5, 0.5)
    assert (config.outputs, config.seed, config.samples, config.opset, config.exporter) == (["logits"], 7, 2, 18, "torchscript")
    assert (config.tolerances["tflite_fp16"].atol, config.tolerances["tflite_fp16"].rtol) == (0.05, 0.01)


def test_default_name_is_the_file_stem(tmp_path):
    assert load_config(write_yaml(tmp_path, MINIMAL, "my_model.yaml")).name == "my_model"


# --- unknown keys -----------------------------------------------------------

def test_unknown_top_level_key_suggests_the_close_one(tmp_path):
    path = write_yaml(tmp_path, MINIMAL + "sampels: 2\n")
    with pytest.raises(ConfigError, match=config_error(path, r"unknown key 'sampels'; did you mean 'samples'\?")):
        load_config(path)


def test_unknown_key_under_inputs_suggests_an_input_key(tmp_path):
    path = write_yaml(tmp_path, MINIMAL + "    dtpye: float16\n")
    with pytest.raises(ConfigError, match=config_error(path, r"unknown key 'inputs\[0\]\.dtpye'; did you mean 'dtype'\?")):
        load_config(path)


def test_unknown_key_under_tolerances_suggests_a_tolerance_key(tmp_path):
    path = write_yaml(tmp_path, MINIMAL + "tolerances:\n  keras: {atol: 0.1, rtol: 0.1, rtoll: 1}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'tolerances\.keras\.rtoll'; did you mean 'rtol'\?"):
        load_config(path)


def test_unknown_key_without_a_close_match_lists_the_allowed_keys(tmp_path):
    path = write_yaml(tmp_path, MINIMAL + "zzz: 1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'zzz'; allowed keys: ") as caught:
        load_config(path)
    listed = str(caught.value).split("allowed keys: ")[1].split(", ")
    assert {"artifacts", "checkpoint", "convert", "inputs", "model", "repair"} <= set(listed)
    assert listed == sorted(listed)


def test_conversion_limits_and_precision_budgets_are_checked_like_every_key(tmp_path):
    path = write_yaml(tmp_path, MINIMAL + "convert: {memory_fracton: 0.5}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'convert\.memory_fracton'; did you mean 'memory_fraction'\?"):
        load_config(path)
    path = write_yaml(tmp_path, MINIMAL + "precision_budget: {fp16: {min_top1: 2}}\n")
    with pytest.raises(ConfigError, match=r"key 'precision_budget\.fp16\.min_top1': Input should be less than or equal to 1"):
        load_config(path)
    path = write_yaml(tmp_path, MINIMAL + "convert: {memory_fraction: 0.5, seconds: 60}\nprecision_budget: {fp16: {min_snr_db: 40}}\n")
    config = load_config(path).config
    assert config.convert.memory_fraction == 0.5 and config.precision_budget["fp16"].min_snr_db == 40


def test_misspelt_required_key_suggests_the_right_one(tmp_path):
    path = write_yaml(tmp_path, MINIMAL.replace("inputs:", "inptus:"))
    with pytest.raises(ConfigError, match=r"unknown key 'inptus'; did you mean 'inputs'\?"):
        load_config(path)


def test_misspelt_required_input_key_suggests_the_right_one(tmp_path):
    path = write_yaml(tmp_path, MINIMAL.replace("shape:", "shpe:"))
    with pytest.raises(ConfigError, match=r"unknown key 'inputs\[0\]\.shpe'; did you mean 'shape'\?"):
        load_config(path)


# --- YAML syntax and document shape ----------------------------------------

def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write_yaml(tmp_path, "model: pipeline.zoo.seed:build\nseed: 0\nsamples: 4: 5\ninputs: []\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}:3: YAML syntax error: mapping values are not allowed here")):
        load_config(path)


def test_yaml_that_is_not_a_mapping_is_rejected(tmp_path):
    path = write_yaml(tmp_path, "- model\n- inputs\n")
    with pytest.raises(ConfigError, match=config_error(path, r"expected a mapping of keys \(model, inputs, \.\.\.\), got list")):
        load_config(path)


def test_empty_yaml_is_rejected(tmp_path):
    path = write_yaml(tmp_path, "")
    with pytest.raises(ConfigError, match=r"expected a mapping of keys .*, got NoneType"):
        load_config(path)


# --- schema errors ----------------------------------------------------------

def test_missing_inputs(tmp_path):
    path = write_yaml(tmp_path, "model: pipeline.zoo.seed:build\n")
    with pytest.raises(ConfigError, match=config_error(path, r"missing required key 'inputs'; see configs/seed_ym\.yaml")):
        load_config(path)


def test_empty_inputs_list(tmp_path):
    path = write_yaml(tmp_path, "model: pipeline.zoo.seed:build\ninputs: []\n")
    with pytest.raises(ConfigError, match=r"key 'inputs': List should have at least 1 item"):
        load_config(path)


def test_shape_of_wrong_type(tmp_path):
    path = write_yaml(tmp_path, MINIMAL.replace("[1, 3, 8, 8]", '"abc"'))
    with pytest.raises(ConfigError, match=config_error(path, r"key 'inputs\[0\]\.shape': Input should be a valid list \(got 'abc'\)")):
        load_config(path)


@pytest.mark.parametrize("shape", ["[1, -3, 8, 8]", "[1, 0, 8, 8]"])
def test_non_positive_dimension(tmp_path, shape):
    path = write_yaml(tmp_path, MINIMAL.replace("[1, 3, 8, 8]", shape))
    with pytest.raises(ConfigError, match=r"key 'inputs\[0\]\.shape': .*every dimension must be a positive integer"):
        load_config(path)


def test_unsupported_dtype(tmp_path):
    path = write_yaml(tmp_path, MINIMAL + "    dtype: float64\n")
    with pytest.raises(ConfigError, match=r"key 'inputs\[0\]\.dtype': Input should be 'float32', .* \(got 'float64'\)"):
        load_config(path)


def test_negative_tolerance(tmp_path):
    path = write_yaml(tmp_path, MINIMAL + "tolerances:\n  keras: {atol: -1, rtol: 0}\n")
    with pytest.raises(ConfigError, match=r"key 'tolerances\.keras\.atol': Input should be greater than or equal to 0"):
        load_config(path)


# --- resolve_source ---------------------------------------------------------

def test_resolve_a_config_name_from_configs_dir():
    source = resolve_source("seed_ym")
    assert source.kind == "config"
    assert source.name == "seed_ym"
    assert source.path == (CONFIGS_DIR / "seed_ym.yaml").resolve()
    assert source.config.model == "pipeline.zoo.seed:build"


def test_resolve_a_misspelt_config_name_suggests_the_close_one():
    with pytest.raises(UsageError, match=r"MODEL=sead_ym: not a config name, .*; did you mean 'seed_ym'\?"):
        resolve_source("sead_ym")


def test_resolve_an_unknown_name_lists_the_known_configs():
    with pytest.raises(UsageError, match=r"MODEL=qqqq: .*; known configs: .*seed_ym"):
        resolve_source("qqqq")


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_resolve_a_missing_yaml_file(tmp_path, suffix):
    path = tmp_path / f"absent{suffix}"
    with pytest.raises(ConfigError, match=re.escape(f"{path}: config file not found")):
        resolve_source(str(path))


def test_resolve_a_missing_onnx_file(tmp_path):
    path = tmp_path / "absent.onnx"
    with pytest.raises(UsageError, match=re.escape(f"{path}: ONNX file not found")):
        resolve_source(str(path))


def test_resolve_a_yaml_path_loads_it(tmp_path):
    path = write_yaml(tmp_path, MINIMAL, "from_path.yaml")
    source = resolve_source(str(path))
    assert (source.kind, source.name, source.path) == ("config", "from_path", path.resolve())


def test_resolve_an_onnx_path_is_named_after_its_stem(tmp_path):
    path = tmp_path / "resnet_tiny.onnx"
    path.write_bytes(b"not parsed at this stage")
    source = resolve_source(str(path))
    assert (source.kind, source.name, source.path, source.config) == ("onnx", "resnet_tiny", path.resolve(), None)


def test_resolve_a_model_onnx_is_named_after_its_folder(tmp_path):
    path = tmp_path / "test_Conv2d" / "model.onnx"
    path.parent.mkdir()
    path.write_bytes(b"")
    assert resolve_source(str(path)).name == "test_Conv2d"


# --- dynamic dimensions -----------------------------------------------------

DYNAMIC = """\
model: pipeline.zoo.seed:build
inputs:
  - name: x
    shape: [1, 3, 8, 8]
    dynamic: {0: batch, 2: height, 3: width}
dims:
  height: {min: 4, max: 64, multiple_of: 2}
"""


def test_dynamic_axes_constraints_and_audit_shapes_load(tmp_path):
    path = write_yaml(tmp_path, DYNAMIC + "audit_shapes:\n  - {batch: 3}\n  - {height: 12, width: 10}\n")
    config = load_config(path).config
    assert config.inputs[0].dynamic == {0: "batch", 2: "height", 3: "width"}
    assert config.dynamic_sizes() == {"batch": 1, "height": 8, "width": 8}
    height = config.constraint("height")
    assert (height.min, height.max, height.multiple_of) == (4, 64, 2)
    assert config.constraint("batch").allows(1000) and not height.allows(9)
    assert config.audit_shapes == [{"batch": 3}, {"height": 12, "width": 10}]


def test_static_configs_have_no_dynamic_dims(tmp_path):
    config = load_config(write_yaml(tmp_path, MINIMAL)).config
    assert config.inputs[0].dynamic == {} and config.dims == {} and config.audit_shapes is None


def test_a_misspelt_constraint_key_suggests_the_right_one(tmp_path):
    path = write_yaml(tmp_path, DYNAMIC.replace("multiple_of", "mutliple_of"))
    with pytest.raises(ConfigError, match=config_error(path, r"unknown key 'dims\.height\.mutliple_of'; did you mean 'multiple_of'\?")):
        load_config(path)


def test_a_misspelt_dynamic_key_suggests_the_right_one(tmp_path):
    path = write_yaml(tmp_path, DYNAMIC.replace("dynamic:", "dynamc:"))
    with pytest.raises(ConfigError, match=r"unknown key 'inputs\[0\]\.dynamc'; did you mean 'dynamic'\?"):
        load_config(path)


def test_constraints_for_an_undeclared_name_suggest_the_declared_one(tmp_path):
    path = write_yaml(tmp_path, DYNAMIC.replace("  height: {", "  heigth: {"))
    with pytest.raises(ConfigError, match=config_error(path, r"'dims' names 'heigth', which no input's 'dynamic' declares; did you mean 'height'\?$")):
        load_config(path)


@pytest.mark.parametrize("dynamic, message", [
    ("{4: batch}", r"key 'inputs\[0\]': axis 4 is out of range for input 'x' of shape \[1, 3, 8, 8\] \(axes 0 to 3\)$"),
    ("{-1: width}", r"key 'inputs\[0\]': axis -1 is out of range"),
    ("{0: batch, '0': b}", r"key 'inputs\[0\]\.dynamic': axis 0 is listed twice; give each axis one name$"),
    ("{0: 2batch}", r"key 'inputs\[0\]': dimension names must be identifiers"),
])
def test_a_bad_axis_gets_one_line(tmp_path, dynamic, message):
    path = write_yaml(tmp_path, DYNAMIC.replace("{0: batch, 2: height, 3: width}", dynamic).replace("dims:\n  height: {min: 4, max: 64, multiple_of: 2}\n", ""))
    with pytest.raises(ConfigError, match=config_error(path, message)) as caught:
        load_config(path)
    assert "\n" not in str(caught.value)


def test_one_name_is_one_size_across_inputs(tmp_path):
    text = DYNAMIC.replace("dims:", "  - {name: y, shape: [2, 4], dynamic: {0: batch}}\ndims:")
    path = write_yaml(tmp_path, text)
    with pytest.raises(ConfigError, match=r"dimension 'batch' is 1 at x axis 0 but 2 at y axis 0 in the example shapes"):
        load_config(path)


@pytest.mark.parametrize("extra, message", [
    ("", r"dimension 'height' is 8 in the example shape, outside its constraints \(min 16, max 64, multiple of 2\)"),
    ("audit_shapes: [{height: 17}]", r"dimension 'height' is 17 in audit_shapes\[0\], outside its constraints"),
])
def test_sizes_outside_the_constraints_are_refused(tmp_path, extra, message):
    text = DYNAMIC.replace("min: 4", "min: 16" if not extra else "min: 4") + extra + "\n"
    with pytest.raises(ConfigError, match=message):
        load_config(write_yaml(tmp_path, text))


def test_audit_shapes_with_an_unknown_name_suggest_the_close_one(tmp_path):
    path = write_yaml(tmp_path, DYNAMIC + "audit_shapes: [{batc: 3}]\n")
    with pytest.raises(ConfigError, match=r"'audit_shapes\[0\]' names 'batc', which no input's 'dynamic' declares; did you mean 'batch'\?"):
        load_config(path)


def test_max_below_min_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"key 'dims\.height': max 2 is below min 4$"):
        load_config(write_yaml(tmp_path, DYNAMIC.replace("max: 64", "max: 2")))
