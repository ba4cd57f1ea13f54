"""PEP 517 / PEP 660 build backend for warden-sdk, standard library only.

Why not setuptools, flit_core or hatchling: none of them can be had offline on a fresh
machine. A new virtual environment has pip (and, before Python 3.12, setuptools), but
setuptools before 70.1 cannot build a wheel without the separate `wheel` package, and the
other backends would have to be downloaded into pip's isolated build environment. With
`requires = []` pip installs nothing before calling these hooks, so `pip install` needs no
index at all. The package is pure Python with no dependencies, which keeps this small:
one `py3-none-any` wheel, an sdist, and an editable wheel that points a `.pth` at `src/`.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Wheels and sdists are byte-for-byte reproducible: one fixed timestamp for every entry.
_EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))  # 1980-01-01, the zip minimum


def read_pyproject(text: str) -> dict[str, Any]:
    """The parsed pyproject.toml: tomllib where it exists (3.11+), else `parse_pyproject_subset`."""
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads(text)
    return parse_pyproject_subset(text)


_HEADER = re.compile(r"^\[([A-Za-z0-9_.-]+)\]\s*(#.*)?$")
_ENTRY = re.compile(r"^([A-Za-z0-9_-]+)\s*=\s*(.+?)\s*$")


def parse_pyproject_subset(text: str) -> dict[str, Any]:
    """Reads the tables this backend needs ([build-system], [project]) from the TOML subset
    pyproject.toml keeps to: `key = "basic string"` and `key = ["single", "line", "array"]`
    (both JSON-compatible). Other tables are skipped whatever they hold. Anything else in the
    two tables fails loudly rather than being misread."""
    wanted = {"build-system", "project"}
    out: dict[str, Any] = {}
    table: dict[str, Any] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = _HEADER.match(stripped)
        if header:
            name = header.group(1)
            table = out.setdefault(name, {}) if name in wanted else None
            continue
        if table is None or not stripped or stripped.startswith("#"):
            continue
        entry = _ENTRY.match(stripped)
        if not entry:
            raise ValueError(f"pyproject.toml line {number}: not `key = value`: {line!r}")
        try:
            table[entry.group(1)] = json.loads(entry.group(2))
        except json.JSONDecodeError as error:
            raise ValueError(
                f"pyproject.toml line {number}: only basic strings and one-line arrays of strings "
                f"can be read without tomllib (Python 3.10): {line!r}"
            ) from error
    return out


def _project() -> Mapping[str, Any]:
    project = read_pyproject((ROOT / "pyproject.toml").read_text(encoding="utf-8")).get("project")
    if not isinstance(project, Mapping):
        raise ValueError("pyproject.toml has no [project] table")
    return project  # pyright: ignore[reportUnknownVariableType]


def _names(project: Mapping[str, Any]) -> tuple[str, str]:
    """(distribution name as written in file names, version)."""
    name = re.sub(r"[-_.]+", "_", str(project["name"])).lower()
    return name, str(project["version"])


def metadata(project: Mapping[str, Any]) -> str:
    """Core metadata 2.1 (PKG-INFO / METADATA) from the [project] table."""
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {project['version']}",
    ]
    if "description" in project:
        lines.append(f"Summary: {project['description']}")
    if "requires-python" in project:
        lines.append(f"Requires-Python: {project['requires-python']}")
    lines += [f"Requires-Dist: {dependency}" for dependency in project.get("dependencies", [])]
    lines += [f"Classifier: {classifier}" for classifier in project.get("classifiers", [])]
    readme = project.get("readme")
    if isinstance(readme, str):
        lines.append("Description-Content-Type: text/markdown")
        body = (ROOT / readme).read_text(encoding="utf-8")
        return "\n".join(lines) + "\n\n" + body
    return "\n".join(lines) + "\n"


def _package_files(package: str) -> Iterator[tuple[str, Path]]:
    """(archive path, file) of every file of the import package under src/, sorted."""
    base = ROOT / "src"
    for path in sorted((base / package).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield path.relative_to(base).as_posix(), path


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
    return f"{name},sha256={digest},{len(data)}"


def _write_wheel(wheel_directory: str, entries: list[tuple[str, bytes]]) -> str:
    name, version = _names(_project())
    dist_info = f"{name}-{version}.dist-info"
    entries = entries + [
        (f"{dist_info}/METADATA", metadata(_project()).encode("utf-8")),
        (
            f"{dist_info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: warden_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        ),
    ]
    record = "\n".join([_record_line(n, d) for n, d in entries] + [f"{dist_info}/RECORD,,", ""])
    entries.append((f"{dist_info}/RECORD", record.encode("utf-8")))
    filename = f"{name}-{version}-py3-none-any.whl"
    stamp = time.gmtime(max(_EPOCH, 315532800))[:6]
    with zipfile.ZipFile(Path(wheel_directory) / filename, "w", zipfile.ZIP_DEFLATED) as wheel:
        for archive_name, data in entries:
            info = zipfile.ZipInfo(archive_name, date_time=stamp)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(info, data)
    return filename


def _import_package() -> str:
    name, _ = _names(_project())
    if not (ROOT / "src" / name / "__init__.py").is_file():
        raise ValueError(f"src/{name}/__init__.py not found: the import package must be named {name}")
    return name


def get_requires_for_build_wheel(config_settings: Mapping[str, Any] | None = None) -> list[str]:
    return []


def get_requires_for_build_sdist(config_settings: Mapping[str, Any] | None = None) -> list[str]:
    return []


def get_requires_for_build_editable(config_settings: Mapping[str, Any] | None = None) -> list[str]:
    return []


def build_wheel(
    wheel_directory: str,
    config_settings: Mapping[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    package = _import_package()
    return _write_wheel(wheel_directory, [(n, p.read_bytes()) for n, p in _package_files(package)])


def build_editable(
    wheel_directory: str,
    config_settings: Mapping[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    package = _import_package()
    # A .pth line is a directory added to sys.path: the checkout's src/ is imported live.
    pth = f"{(ROOT / 'src').resolve()}\n".encode("utf-8")
    return _write_wheel(wheel_directory, [(f"__editable__.{package}.pth", pth)])


def build_sdist(sdist_directory: str, config_settings: Mapping[str, Any] | None = None) -> str:
    package = _import_package()
    name, version = _names(_project())
    prefix = f"{name}-{version}"
    files: list[tuple[str, bytes]] = [
        ("PKG-INFO", metadata(_project()).encode("utf-8")),
        ("pyproject.toml", (ROOT / "pyproject.toml").read_bytes()),
        ("README.md", (ROOT / "README.md").read_bytes()),
        ("build_backend/warden_build.py", Path(__file__).read_bytes()),
    ]
    files += [(f"src/{n}", p.read_bytes()) for n, p in _package_files(package)]
    filename = f"{prefix}.tar.gz"
    with (
        open(Path(sdist_directory) / filename, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=_EPOCH) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as sdist,
    ):
        for archive_name, data in files:
            info = tarfile.TarInfo(f"{prefix}/{archive_name}")
            info.size = len(data)
            info.mtime = _EPOCH
            info.mode = 0o644
            sdist.addfile(info, io.BytesIO(data))
    return filename
