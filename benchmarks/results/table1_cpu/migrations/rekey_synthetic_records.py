"""One-off migration (2026-11-30): re-key the Table I CPU records of conditions with the shipped synthesis bundle.

Their key held a fingerprint of the whole copied synthesis bundle, metadata.json and output settings of
inference.yaml included, so a changelog entry made finished runs look new. The key now holds
``synthesis_fingerprint`` (weights and centroid library by content, and the settings that decide samples). The
weights, library and those settings are the same as when these runs were made, so each record gets the new
fingerprint of the same bundle and the key that follows from it; its identity (that of the trained weights), its
code fingerprints and its metrics are unchanged.

    python benchmarks/results/table1_cpu/migrations/rekey_synthetic_records.py benchmarks/results/table1_cpu/records
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from monai_dafgan.records import RunRecords, config_key
from monai_dafgan.synthesis import shipped_synthesis_bundle, synthesis_fingerprint
from monai_dafgan.utils import set_config_values


def shipped_fingerprint(baseline: bool) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "synthesis"
        shutil.copytree(shipped_synthesis_bundle(), copy)
        set_config_values(copy / "configs" / "inference.yaml", {"baseline": baseline})
        return synthesis_fingerprint(copy)


def main(folder: Path) -> None:
    records = RunRecords(folder)
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        synthetic = record["config"].get("synthetic")
        if not synthetic or "generators" in synthetic:
            continue
        new = shipped_fingerprint(bool(synthetic["baseline"]))
        if synthetic["weights"] == new:
            continue
        synthetic["weights"] = new
        record["key"] = config_key(record["config"])
        name = path.stem.rsplit("_", 1)[0]
        written = records.save(name, record)
        if written != path:
            path.unlink()
        print(f"{path.name} -> {written.name}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
