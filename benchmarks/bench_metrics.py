"""Speed of the vectorised nuclei metrics against the loop-based HoVer-Net-style reference, side by side.

Input: a real CoNSeP tile (``--tile``, default train_10 with 997 nuclei) when $CONSEP_DIR is set, else a synthetic
1000x1000 map of ~1000 random touching disks. The prediction is the ground truth eroded by 1 px, with 10 % of the
nuclei dropped, 20 % of neighbour pairs merged, 10 % split in halves, shifted by (1, 1) px, and 20 % retyped.

Per metric group, the vectorised function (from raw maps: its own remap included) is timed against the reference
(on maps already remapped, as HoVer-Net's ``run_nuclei_inst_stat`` does), median of repeats; then every metric at
once (``nuclei_metrics`` with types vs ``reference_nuclei_metrics``), whose outputs must agree to 1e-9. A last
section compares the two centroid pairings and shows how the vectorised metrics scale with the number of nuclei.
Everything runs on one thread.

    [CONSEP_DIR=/path/to/consep] python benchmarks/bench_metrics.py [--tile train_10] [--repeats 7]

Writes benchmarks/results/metrics.json.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.io as sio  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # run as a script from a checkout, package not installed

import reference_metrics as ref  # noqa: E402

from monai_dafgan.metrics import (  # noqa: E402
    aji_plus_score,
    aji_score,
    detection_counts,
    dice_score,
    evaluate_nuclei,
    instance_centroids,
    instance_types,
    nuclei_metrics,
    panoptic_quality,
    remap_instances,
)


def median_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def load_ground_truth(tile: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    consep_dir = os.environ.get("CONSEP_DIR")
    if consep_dir:
        mat = sio.loadmat(str(Path(consep_dir) / "Train" / "Labels" / f"{tile}.mat"))
        return mat["inst_map"].astype(np.int32), mat["type_map"].astype(np.int32), f"CoNSeP {tile}"
    inst, types = ref.random_disk_maps(rng, (1000, 1000), num_disks=1000, radius_range=(5, 11))
    return inst, types, "synthetic random disks"


def perturbed_prediction(true: np.ndarray, true_type: np.ndarray, rng: np.random.Generator):
    pred = ref.erode_instances(true, 1)
    pred = ref.drop_instances(pred, 0.1, rng)
    pred = ref.merge_neighbours(pred, rng, 0.2)
    pred = ref.split_instances(pred, 0.1, rng)
    pred = ref.shift_map(pred, 1, 1)
    pred_type = np.where(pred > 0, ref.shift_map(true_type, 1, 1), 0)
    ids = np.unique(pred[pred > 0])
    retyped = np.isin(pred, rng.choice(ids, size=int(0.2 * ids.size), replace=False))
    return pred, np.where(retyped, ref.retype_instances(pred, 4, rng), pred_type)


def vectorised_f1(pred, true, pred_type, true_type) -> dict:
    return detection_counts(
        instance_centroids(true),
        instance_centroids(pred),
        instance_types(true, true_type),
        instance_types(pred, pred_type),
    ).scores()


def reference_f1(pred_r, true_r, pred_type, true_type) -> dict:
    image = (ref.centroids(true_r), ref.majority_types(true_r, true_type), ref.centroids(pred_r),
             ref.majority_types(pred_r, pred_type))
    return ref.type_stats([image])


def scaling_rows(rng: np.random.Generator, repeats: int) -> list[dict]:
    rows = []
    for side, disks in ((1000, 1000), (2000, 4000)):
        true, true_type = ref.random_disk_maps(rng, (side, side), num_disks=disks, radius_range=(5, 11))
        pred, pred_type = perturbed_prediction(true, true_type, rng)
        row = {"shape": [side, side], "num_true": remap_instances(true)[1]}
        for pairing in ("hovernet", "within_radius"):
            row[f"seconds_{pairing}"] = median_seconds(
                lambda: nuclei_metrics(pred, true, pred_type, true_type, pairing=pairing), repeats
            )
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tile", default="train_10", help="CoNSeP Train tile used when $CONSEP_DIR is set")
    parser.add_argument("--repeats", type=int, default=7, help="repeats of each vectorised timing (median)")
    parser.add_argument("--reference-repeats", type=int, default=3, help="repeats of each reference timing")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "metrics.json"))
    args = parser.parse_args()
    started = time.perf_counter()

    rng = np.random.default_rng(0)
    true, true_type, source = load_ground_truth(args.tile, rng)
    pred, pred_type = perturbed_prediction(true, true_type, rng)
    true_r, pred_r = ref.remap_label(true), ref.remap_label(pred)
    print(f"input: {source}, {true.shape[0]}x{true.shape[1]}, {true_r.max()} true / {pred_r.max()} predicted nuclei")

    groups = {
        "remap": (
            lambda: (remap_instances(pred), remap_instances(true)),
            lambda: (ref.remap_label(pred), ref.remap_label(true)),
        ),
        "dice": (lambda: dice_score(pred, true), lambda: ref.get_dice_1(true_r, pred_r)),
        "aji": (lambda: aji_score(pred, true), lambda: ref.get_fast_aji(true_r, pred_r)),
        "aji_plus": (lambda: aji_plus_score(pred, true), lambda: ref.get_fast_aji_plus(true_r, pred_r)),
        "dq/sq/pq": (lambda: panoptic_quality(pred, true), lambda: ref.get_fast_pq(true_r, pred_r)),
        "f1 (detection + types)": (
            lambda: vectorised_f1(pred, true, pred_type, true_type),
            lambda: reference_f1(pred_r, true_r, pred_type, true_type),
        ),
    }
    rows = []
    for name, (vectorised, reference) in groups.items():
        rows.append({
            "group": name,
            "vectorised_s": median_seconds(vectorised, args.repeats),
            "reference_s": median_seconds(reference, args.reference_repeats),
            "reference_repeats": args.reference_repeats,
        })

    vectorised_all = nuclei_metrics(pred, true, pred_type, true_type)
    start = time.perf_counter()
    reference_all = ref.reference_nuclei_metrics(pred, true, pred_type, true_type)
    reference_all_s = time.perf_counter() - start
    rows.append({
        "group": "all keys, with types",
        "vectorised_s": median_seconds(lambda: nuclei_metrics(pred, true, pred_type, true_type), args.repeats),
        "reference_s": reference_all_s,
        "reference_repeats": 1,  # the slowest reference, run once (it also provides the agreement check)
    })
    for row in rows:
        row["speedup"] = row["reference_s"] / row["vectorised_s"]
    max_difference = max(abs(vectorised_all[key] - reference_all[key]) for key in vectorised_all)
    if vectorised_all.keys() != reference_all.keys() or max_difference > 1e-9:
        raise SystemExit(f"vectorised and reference metrics disagree (max difference {max_difference:.3g})")

    print(f"\n{'metric group':<26}{'vectorised ms':>15}{'reference ms':>15}{'speed-up':>10}")
    for row in rows:
        print(f"{row['group']:<26}{1e3 * row['vectorised_s']:>15.1f}{1e3 * row['reference_s']:>15.0f}"
              f"{row['speedup']:>9.0f}x")
    print(f"agreement: {len(vectorised_all)} keys, max |difference| {max_difference:.2g}")

    pairing_summary = {}
    for pairing in ("hovernet", "within_radius"):
        counts = evaluate_nuclei(pred, true, pred_type, true_type, pairing=pairing).detection
        pairing_summary[pairing] = {"tp": counts.tp, **counts.scores()}
    print("\ncentroid pairing   TP     f1_detection  accuracy_type")
    for p, summary in pairing_summary.items():
        print(f"{p:<17}{summary['tp']:>5}{summary['f1_detection']:>14.4f}{summary['accuracy_type']:>15.4f}")

    scaling = scaling_rows(rng, max(1, args.repeats // 2))
    print("\nscaling (synthetic, all keys)   nuclei   hovernet s   within_radius s")
    for row in scaling:
        print(f"{'x'.join(map(str, row['shape'])):<32}{row['num_true']:>6}{row['seconds_hovernet']:>13.3f}"
              f"{row['seconds_within_radius']:>18.3f}")

    result = {
        "input": source,
        "shape": list(true.shape),
        "num_true": int(true_r.max()),
        "num_pred": int(pred_r.max()),
        "repeats": args.repeats,
        "reference_repeats": args.reference_repeats,
        "threads": 1,
        "timings": rows,
        "agreement_max_abs_difference": max_difference,
        "metrics": vectorised_all,
        "pairing_comparison": pairing_summary,
        "scaling": scaling,
        "environment": {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
                        "machine": platform.machine(), "processor": platform.processor()},
        "total_benchmark_s": time.perf_counter() - started,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"\nwrote {args.output} ({result['total_benchmark_s']:.0f} s)")


if __name__ == "__main__":
    main()
