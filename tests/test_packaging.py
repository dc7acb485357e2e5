"""What a non-editable install (``pip install .``) carries: every subpackage, and the bundles with their shipped
weights inside the package, where :func:`monai_dafgan.synthesis.bundles_root` looks first."""

from __future__ import annotations

import tomllib
from pathlib import Path

import monai_dafgan
from monai_dafgan.synthesis import bundles_root, shipped_synthesis_bundle

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_subpackage_is_installed():
    source = Path(monai_dafgan.__file__).parent
    found = {"monai_dafgan"} | {
        "monai_dafgan." + ".".join(p.parent.relative_to(source).parts) for p in source.rglob("*/__init__.py")
    }
    assert found | {"monai_dafgan._bundles"} == set(PYPROJECT["packages"])


def test_bundle_files_are_package_data():
    assert PYPROJECT["package-dir"]["monai_dafgan._bundles"] == "bundles"
    patterns = PYPROJECT["package-data"]["monai_dafgan._bundles"]
    for path in (REPO / "bundles").rglob("*"):
        relative = path.relative_to(REPO / "bundles")
        if path.is_file() and relative.parts[1] in ("configs", "docs", "models", "LICENSE"):
            assert any(relative.match(pattern) for pattern in patterns), relative


def test_bundles_are_found_installed_or_in_the_checkout(tmp_path, monkeypatch):
    assert shipped_synthesis_bundle() == bundles_root() / "dafgan_nuclei_synthesis"
    assert (shipped_synthesis_bundle() / "configs" / "inference.yaml").is_file()
    import monai_dafgan.synthesis.bundle as bundle_module

    installed = tmp_path / "site" / "monai_dafgan"
    (installed / "synthesis").mkdir(parents=True)
    (installed / "_bundles" / "dafgan_points2mask" / "configs").mkdir(parents=True)
    (installed / "_bundles" / "dafgan_points2mask" / "configs" / "train.yaml").write_text("{}")
    monkeypatch.setattr(bundle_module, "__file__", str(installed / "synthesis" / "bundle.py"))
    assert bundles_root() == installed / "_bundles"
