"""Run records and fingerprints: what decides whether a study run counts as done."""

from __future__ import annotations

import pytest

from monai_dafgan.records import RunRecords, code_fingerprint, config_key, files_fingerprint


def test_config_key_is_order_free_and_value_sensitive():
    assert config_key({"a": 1, "b": [1, 2]}) == config_key({"b": [1, 2], "a": 1})
    assert config_key({"a": 1}) != config_key({"a": 1.5})
    assert config_key({"a": {"x": None}}) != config_key({"a": {}})


def test_code_fingerprint_ignores_comments_and_docstrings_not_code(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('"""doc"""\n\ndef f(x):\n    """what f does"""\n    return x + 1  # add one\n')
    config = tmp_path / "c.yaml"
    config.write_text("lr: 0.001  # the rate\n")
    base = code_fingerprint([module, config])
    module.write_text('"""another doc"""\n\ndef f(x):\n    # comment\n    return x + 1\n')
    config.write_text("# head\nlr: 0.001\n")
    assert code_fingerprint([module, config]) == base
    module.write_text('"""doc"""\n\ndef f(x):\n    return x + 2\n')
    assert code_fingerprint([module, config]) != base
    with pytest.raises(FileNotFoundError, match="cannot fingerprint"):
        code_fingerprint([tmp_path / "missing.py"])
    assert code_fingerprint(["segmentation"]) == code_fingerprint(["segmentation"])  # package-relative


def test_files_fingerprint_follows_content_not_paths(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.png").write_bytes(b"image")
        (tmp_path / folder / "x.mat").write_bytes(b"label")
    files = [{"name": "x", "image": str(tmp_path / f / "x.png"), "label": str(tmp_path / f / "x.mat")} for f in "ab"]
    assert files_fingerprint(files[:1]) == files_fingerprint(files[1:])
    (tmp_path / "b" / "x.mat").write_bytes(b"other label")
    assert files_fingerprint(files[:1]) != files_fingerprint(files[1:])


def test_run_records_round_trip_and_refuse_other_keys(tmp_path):
    records = RunRecords(tmp_path / "records")
    key = config_key({"seed": 0})
    assert records.load("real_seed0", key) is None
    path = records.save("real_seed0", {"key": key, "config": {"seed": 0}, "evaluations": {}})
    assert path.name == f"real_seed0_{key[:12]}.json"
    assert records.load("real_seed0", key)["config"] == {"seed": 0}
    clash = key[:12] + "0" * 52
    assert records.load("real_seed0", clash) is None
