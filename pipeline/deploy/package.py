"""`make package MODEL=...`: dist/<name>-<short sha>.tar.gz from the artifact folder.

Reproducible: the same artifacts give the same bytes. Entries are sorted, every mtime is
0, owners are uid/gid 0 with no names, modes are 0644/0755, and the gzip header carries
no timestamp or file name. The short sha is the manifest's, so the name says which
artifacts are inside. Only files the manifest lists (plus the manifest) are packed, and
only after their hashes are checked.
"""
from __future__ import annotations

import argparse
import gzip
import io
import sys
import tarfile
from pathlib import Path

from pipeline.artifacts.folder import sha256
from pipeline.deploy.manifest import MANIFEST, artifact_root, load
from pipeline.deploy.verify import changed_files
from pipeline.errors import ArtifactError, PipelineError

SHORT = 12


def package(root: Path, dist: Path) -> Path:
    """Write the tarball and return its path; ArtifactError if a listed file changed."""
    manifest = load(root)
    changed = changed_files(root, manifest["artifacts"])
    if changed:
        raise ArtifactError(f"{root}: {changed[0]}; rerun the conversion or 'verify' before packaging")
    name = f"{manifest['model']}-{sha256(root / MANIFEST)[:SHORT]}"
    paths = sorted([entry["path"] for entry in manifest["artifacts"]] + [MANIFEST])
    dist.mkdir(parents=True, exist_ok=True)
    target = dist / f"{name}.tar.gz"
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(tarball(root, paths, name))
    tmp.replace(target)
    return target


def tarball(root: Path, paths: list[str], prefix: str) -> bytes:
    """A gzip'd tar of `paths` (relative to root) under `prefix/`, byte-identical for identical files."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in _directories(paths):
            tar.addfile(_info(f"{prefix}/{directory}", tarfile.DIRTYPE, 0o755, 0))
        for relative in paths:
            data = (root / relative).read_bytes()
            tar.addfile(_info(f"{prefix}/{relative}", tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def _directories(paths: list[str]) -> list[str]:
    found = {"/".join(p.split("/")[:i]) for p in paths for i in range(1, p.count("/") + 1)}
    return [""] + sorted(found)


def _info(name: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name.rstrip("/"))
    info.type, info.mode, info.size, info.mtime = kind, mode, size, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.deploy.package",
                                     description="Pack an artifact folder into dist/<name>-<short sha>.tar.gz, reproducibly.")
    parser.add_argument("model", metavar="MODEL", help="config name, .yaml or .onnx (its artifact folder is packed)")
    parser.add_argument("--out", help="the artifact folder, when not artifacts/<name>")
    parser.add_argument("--dist", default="dist", help="where the tarball goes (default: dist)")
    args = parser.parse_args(argv)
    try:
        root = artifact_root(args.model, args.out)
        target = package(root, Path(args.dist))
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"package: {target} ({target.stat().st_size} bytes, sha256 {sha256(target)[:SHORT]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
