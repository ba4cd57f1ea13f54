"""The standard-library build backend: wheel, sdist and editable wheel are well-formed.

(That pip installs the package offline with it is shown by the harness, which installs the
package under test so.)"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import sys
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType

from .conftest import SDK_ROOT, load_module


def load_backend() -> ModuleType:
    return load_module(SDK_ROOT / "build_backend/warden_build.py")


def package_files() -> set[str]:
    base = SDK_ROOT / "src"
    return {
        p.relative_to(base).as_posix()
        for p in (base / "warden_sdk").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_the_wheel_holds_the_package_and_its_metadata(tmp_path: Path) -> None:
    backend = load_backend()
    assert backend.get_requires_for_build_wheel() == []
    name = backend.build_wheel(str(tmp_path))
    assert name == "warden_sdk-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(tmp_path / name) as wheel:
        names = set(wheel.namelist())
        dist_info = "warden_sdk-0.1.0.dist-info"
        assert names == package_files() | {f"{dist_info}/{f}" for f in ("METADATA", "WHEEL", "RECORD")}
        assert "warden_sdk/py.typed" in names and "warden_sdk/_generated.py" in names
        metadata = wheel.read(f"{dist_info}/METADATA").decode()
        assert "Name: warden-sdk\nVersion: 0.1.0\n" in metadata
        assert "Requires-Python: >=3.10\n" in metadata and "Requires-Dist" not in metadata
        assert "Classifier: Typing :: Typed\n" in metadata
        assert metadata.split("\n\n", 1)[1] == (SDK_ROOT / "README.md").read_text(encoding="utf-8")
        assert "Root-Is-Purelib: true\nTag: py3-none-any\n" in wheel.read(f"{dist_info}/WHEEL").decode()
        # RECORD lists every other file with its SHA-256 and size, as installers check.
        rows = list(csv.reader(io.StringIO(wheel.read(f"{dist_info}/RECORD").decode())))
        assert {row[0] for row in rows} == names
        for path, digest, size in rows:
            if path.endswith("RECORD"):
                assert (digest, size) == ("", "")
                continue
            data = wheel.read(path)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert (digest, size) == (f"sha256={expected}", str(len(data)))
    # Reproducible: the same bytes every time.
    again = tmp_path / "again"
    again.mkdir()
    assert (again / backend.build_wheel(str(again))).read_bytes() == (tmp_path / name).read_bytes()


def test_the_sdist_rebuilds(tmp_path: Path) -> None:
    backend = load_backend()
    name = backend.build_sdist(str(tmp_path))
    assert name == "warden_sdk-0.1.0.tar.gz"
    with tarfile.open(tmp_path / name) as sdist:
        names = {m.name.removeprefix("warden_sdk-0.1.0/") for m in sdist.getmembers()}
        assert names == {"PKG-INFO", "pyproject.toml", "README.md", "build_backend/warden_build.py"} | {
            f"src/{f}" for f in package_files()
        }
        if hasattr(tarfile, "data_filter"):  # Python versions with extraction filters
            sdist.extractall(tmp_path / "unpacked", filter="data")
        else:
            sdist.extractall(tmp_path / "unpacked")
    # The backend inside the sdist builds the same wheel from it.
    unpacked = load_module(tmp_path / "unpacked/warden_sdk-0.1.0/build_backend/warden_build.py")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / unpacked.build_wheel(str(wheels))) as wheel:
        assert "warden_sdk/client.py" in wheel.namelist()


def test_the_editable_wheel_points_at_the_checkout(tmp_path: Path) -> None:
    backend = load_backend()
    with zipfile.ZipFile(tmp_path / backend.build_editable(str(tmp_path))) as wheel:
        (pth,) = [n for n in wheel.namelist() if n.endswith(".pth")]
        assert wheel.read(pth).decode().strip() == str((SDK_ROOT / "src").resolve())


def test_pyproject_reads_the_same_without_tomllib() -> None:
    backend = load_backend()
    text = (SDK_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    subset = backend.parse_pyproject_subset(text)
    assert subset["project"]["name"] == "warden-sdk" and subset["build-system"]["requires"] == []
    if sys.version_info >= (3, 11):
        import tomllib

        full = tomllib.loads(text)
        assert subset == {"project": full["project"], "build-system": full["build-system"]}
