import pytest

from pipeline.batch.models import expand_models
from pipeline.config import CONFIGS_DIR
from pipeline.errors import UsageError
from tests.batch.support import write_config


def test_config_names_and_yaml_paths(tmp_path):
    other = write_config(tmp_path, "other")
    models = expand_models(["seed_ym", str(other)])
    assert [m.name for m in models] == ["seed_ym", "other"]
    assert models[0].path == CONFIGS_DIR / "seed_ym.yaml"
    assert models[1].arg == str(other.resolve())


def test_folder_of_configs_is_every_config_under_it():
    models = expand_models([str(CONFIGS_DIR / "zoo")])
    expected = sorted(p.stem for p in (CONFIGS_DIR / "zoo").glob("*.yaml"))
    assert sorted(m.name for m in models) == expected
    assert len(models) == 8


def test_glob(tmp_path):
    for name in ("a", "b", "c"):
        write_config(tmp_path, name)
    (tmp_path / "notes.txt").write_text("not a config")
    assert [m.name for m in expand_models([str(tmp_path / "[ab].yaml")])] == ["a", "b"]


def test_onnx_file(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph), tmp_path / "relu.onnx")
    (model,) = expand_models([str(tmp_path)])
    assert model.name == "relu"
    assert len(model.config_sha256) == 64


def test_a_model_named_twice_runs_once():
    assert [m.name for m in expand_models(["seed_ym", "seed_ym", str(CONFIGS_DIR / "seed_ym.yaml")])] == ["seed_ym"]


def test_two_configs_with_one_name_are_refused(tmp_path):
    write_config(tmp_path / "x", "seed_ym")
    with pytest.raises(UsageError, match="model name 'seed_ym' is also used by .*rename one"):
        expand_models(["seed_ym", str(tmp_path / "x" / "seed_ym.yaml")])


def test_bad_name_is_one_line_with_a_suggestion():
    with pytest.raises(UsageError, match="MODEL=sed_ym: not a config name.*did you mean 'seed_ym'"):
        expand_models(["seed_ym", "sed_ym"])


def test_glob_matching_nothing(tmp_path):
    with pytest.raises(UsageError, match=r"nothing\*\.yaml: the pattern matches no file"):
        expand_models([str(tmp_path / "nothing*.yaml")])


def test_empty_folder(tmp_path):
    with pytest.raises(UsageError, match="folder holds no .yaml config or .onnx file"):
        expand_models([str(tmp_path)])


def test_bad_config_in_a_folder_is_named(tmp_path):
    (tmp_path / "broken.yaml").write_text("model: x\n")
    with pytest.raises(UsageError, match="broken.yaml: missing required key 'inputs'"):
        expand_models([str(tmp_path)])


def test_sha_follows_the_config_contents(tmp_path):
    path = write_config(tmp_path, "m")
    before = expand_models([str(path)])[0].config_sha256
    path.write_text(path.read_text().replace("low: -0.5", "low: -0.4"))
    assert expand_models([str(path)])[0].config_sha256 != before
