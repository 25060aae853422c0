"""package: a reproducible tarball of the files the manifest lists."""
from __future__ import annotations

import tarfile
import time

import pytest

from pipeline.deploy import manifest as manifest_module
from pipeline.deploy.package import main, package
from pipeline.errors import ArtifactError


def _folder(root):
    (root / "saved_model" / "variables").mkdir(parents=True)
    (root / "saved_model" / "variables" / "variables.index").write_bytes(b"index")
    (root / "model.onnx").write_bytes(b"onnx bytes")
    (root / "model_float32.tflite").write_bytes(b"tflite bytes")
    (root / "convert.log").write_text("not shipped")
    manifest_module.write(root, None, {"model": "tiny", "models": []})
    return root


def test_two_packages_are_byte_identical(tmp_path):
    root = _folder(tmp_path / "art")
    first = package(root, tmp_path / "d1")
    time.sleep(1.1)  # a clock-dependent header would differ now
    (root / "model.onnx").touch()
    second = package(root, tmp_path / "d2")
    assert first.name == second.name
    assert first.name.startswith("tiny-") and first.name.endswith(".tar.gz")
    assert first.read_bytes() == second.read_bytes()


def test_entries_are_sorted_with_fixed_owner_mtime_and_mode(tmp_path):
    root = _folder(tmp_path / "art")
    target = package(root, tmp_path / "dist")
    prefix = target.name.removesuffix(".tar.gz")
    with tarfile.open(target) as tar:
        members = tar.getmembers()
    files = [m.name for m in members if m.isfile()]
    assert files == sorted(files)
    assert files == [f"{prefix}/{p}" for p in ("manifest.json", "model.onnx", "model_float32.tflite",
                                               "saved_model/variables/variables.index")]
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)
    assert {m.mode for m in members if m.isfile()} == {0o644}
    assert target.read_bytes()[4:8] == b"\0\0\0\0"  # gzip MTIME


def test_a_changed_file_is_refused_and_named(tmp_path):
    root = _folder(tmp_path / "art")
    (root / "model.onnx").write_bytes(b"onnx bytez")
    with pytest.raises(ArtifactError, match="model.onnx: sha256 differs"):
        package(root, tmp_path / "dist")


def test_cli_without_a_manifest_exits_3(tmp_path, capsys):
    assert main(["seed_ym", "--out", str(tmp_path), "--dist", str(tmp_path / "dist")]) == 3
    assert "manifest.json: missing" in capsys.readouterr().err


@pytest.mark.slow
def test_packaging_a_converted_model_twice_gives_identical_tarballs(seed_run, tmp_path, capsys):
    for dist in ("d1", "d2"):
        assert main(["seed_ym", "--out", str(seed_run.root), "--dist", str(tmp_path / dist)]) == 0
    first, second = (next((tmp_path / d).glob("seed_ym-*.tar.gz")) for d in ("d1", "d2"))
    assert first.name == second.name
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        names = tar.getnames()
    assert f"{first.name.removesuffix('.tar.gz')}/model_float32.tflite" in names
    assert not any(name.endswith(".log") for name in names)


@pytest.mark.slow
def test_an_unpacked_read_only_package_verifies(seed_run, tmp_path):
    import os

    from pipeline.deploy.verify import verify

    target = package(seed_run.root, tmp_path / "dist")
    with tarfile.open(target) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    folder = tmp_path / "unpacked" / target.name.removesuffix(".tar.gz")
    for path in folder.rglob("*"):
        os.chmod(path, 0o555 if path.is_dir() else 0o444)
    try:
        assert verify(folder).passed
    finally:
        for path in folder.rglob("*"):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)


def test_makefile_package_target_runs_the_packager():
    from tests.support import REPO

    makefile = (REPO / "Makefile").read_text()
    assert "package: $(STAMP)" in makefile
    assert "-m pipeline.deploy.package $(MODEL) $(OUT_ARG) --dist $(DIST)" in makefile
    assert "-m pipeline.deploy.verify $(MODEL) $(OUT_ARG)" in makefile
