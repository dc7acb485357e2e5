"""HoVer-Net training-sample cost: the random affine resampled onto the whole 540x540 extraction window and then
cropped to the network input (the model zoo's order) against the affine computed straight onto the input patch
(what ``hovernet_train_transforms`` does), side by side on the same windows, single thread.

    python benchmarks/bench_hovernet_data.py [--data-dir ../shared/data/consep] [--samples 30]

Without real data it runs on toy tiles. Prints ms per sample and the ratio for several patch sizes.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from monai.transforms import RandAffined

from _common import REPO, environment, write_result
from monai_dafgan.data import SlidingWindowCropDataset, load_consep, make_toy_consep
import monai_dafgan.segmentation.transforms as recipe
from monai_dafgan.segmentation import hovernet_train_transforms


class _WindowAffine(RandAffined):
    """RandAffined without an output size: it resamples onto the whole window, as the chain did before."""

    def __init__(self, *args, spatial_size=None, **kwargs):
        super().__init__(*args, **kwargs)


def _window_affine_chain(patch_size: int, out_size: int):
    """The training chain as it was: the same transforms, the affine onto the whole window."""
    original = recipe.RandAffined
    recipe.RandAffined = _WindowAffine
    try:
        return hovernet_train_transforms(patch_size, out_size, augment=True)
    finally:
        recipe.RandAffined = original


def _ms_per_sample(tiles, chain, samples: int, seed: int = 0) -> float:
    dataset = SlidingWindowCropDataset(tiles, window=540, stride=164, pad=188, transform=chain)
    chain.set_random_state(seed)
    dataset[0]
    start = time.perf_counter()
    for index in range(samples):
        dataset[index % len(dataset)]
    return (time.perf_counter() - start) / samples * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("CONSEP_DIR"))
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "hovernet_data.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()
    if args.data_dir:
        tiles, data = load_consep(args.data_dir, "Train")[:4], f"CoNSeP Train ({args.data_dir})"
    else:
        root = make_toy_consep(Path(os.environ.get("TMPDIR", "/tmp")) / "bench_hovernet_data", num_tiles=2, size=1000)
        tiles, data = load_consep(root, "Train"), "toy tiles 1000x1000"
    rows = []
    for patch, out in ((256, 164), (256, 192), (160, 128)):
        chain = hovernet_train_transforms(patch, out, augment=True)
        window = _ms_per_sample(tiles, _window_affine_chain(patch, out), args.samples)
        direct = _ms_per_sample(tiles, chain, args.samples)
        rows.append({"patch_size": patch, "out_size": out, "window_affine_ms": window, "patch_affine_ms": direct,
                     "speedup": window / direct})
        print(f"patch {patch} -> {out}: affine on the 540 window {window:.0f} ms/sample, onto the patch "
              f"{direct:.0f} ms/sample: {window / direct:.2f}x")
    write_result({"data": data, "samples": args.samples, "rows": rows, "environment": environment(load)}, args.output)


if __name__ == "__main__":
    main()
