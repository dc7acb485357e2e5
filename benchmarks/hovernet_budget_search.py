"""Budget search for a HoVer-Net that learns on CPU: one training run of a ResNet HoVer-Net with the package's
pieces (the bundle's transform chain and loss, ``SlidingWindowCropDataset`` of 540x540 windows, Adam, one-cycle or
constant learning rate), scored on the held-out tiles evaluated whole at chosen iterations, with HoVer-Net's
post-processing and with ``keep_unmarked``. Each evaluation appends one JSON line (iterations, training minutes
excluding evaluation, Dice/AJI/DQ/SQ/PQ both ways) to ``--log``; the curve of PQ against CPU minutes is read from it.

    CONSEP_DIR=../shared/data/consep python benchmarks/hovernet_budget_search.py --tag r18_160 --patch 160 \\
        --out-size 128 --batch 8 --iters 1500 --lr 0.002 --hv-weight 2 --eval-at 500,1000

Intermediate points of a one-cycle run are not budget-matched runs (the rate has not annealed yet); the bundle run
of the chosen budget is the figure that counts (``configs/table1/cpu.yaml``, ``benchmarks/results/table1_cpu.md``).
Training tiles: all Train tiles but train_5, 10, 15, 20, 25, which are the evaluated ones.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from monai.apps.pathology.engines.utils import PrepareBatchHoVerNet
from monai.apps.pathology.losses import HoVerNetLoss
from monai.data import DataLoader
from monai.utils import set_determinism

from _common import REPO
from monai_dafgan.data import SlidingWindowCropDataset, load_consep
from monai_dafgan.data import select_tiles
from monai_dafgan.segmentation import build_hovernet, evaluate_tiles, hovernet_train_transforms

HOLDOUT = ["train_5", "train_10", "train_15", "train_20", "train_25"]
SCORES = ("dice", "aji", "dq", "sq", "pq")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    consep = os.environ.get("CONSEP_DIR")
    parser.add_argument("--data-dir", type=Path, default=consep, required=not consep, help="CoNSeP root (CONSEP_DIR)")
    parser.add_argument("--tag", required=True, help="name of the run in the log")
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--patch", type=int, default=160, help="network input side")
    parser.add_argument("--out-size", type=int, default=128, help="network output side")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=0.002, help="peak (onecycle) or constant learning rate")
    parser.add_argument("--schedule", choices=("onecycle", "constant"), default="onecycle")
    parser.add_argument("--hv-weight", type=float, default=2.0, help="HoVerNetLoss lambda_hv_mse")
    parser.add_argument("--eval-at", default="", help="comma-separated iterations to evaluate at (and at the end)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log", type=Path, default=REPO / "benchmarks" / "results" / "hovernet_budget_search.jsonl")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    set_determinism(args.seed)

    tiles = load_consep(args.data_dir, "Train")
    train = [t for t in tiles if t["name"] not in HOLDOUT]
    chain = hovernet_train_transforms(args.patch, args.out_size, augment=True)
    dataset = SlidingWindowCropDataset(train, window=540, stride=164, pad=188, transform=chain)
    sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=args.iters * args.batch)
    loader = DataLoader(dataset, batch_size=args.batch, sampler=sampler, num_workers=args.workers, drop_last=True,
                        persistent_workers=args.workers > 0)  # fmt: skip
    network = build_hovernet(args.encoder, 5, patch_size=args.patch, out_size=args.out_size)
    optimizer = torch.optim.Adam(network.parameters(), lr=args.lr, weight_decay=1e-5)
    if args.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=args.lr, total_steps=args.iters, pct_start=0.15
        )
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    loss_function = HoVerNetLoss(lambda_hv_mse=args.hv_weight)
    prepare = PrepareBatchHoVerNet(extra_keys=["label_type", "hover_label_inst"])
    evaluate_at = sorted({int(x) for x in args.eval_at.split(",") if x} | {args.iters})
    held_out = select_tiles(tiles, include=HOLDOUT)

    args.log.parent.mkdir(parents=True, exist_ok=True)
    losses, iteration, training_seconds, started = [], 0, 0.0, time.perf_counter()
    for batch in loader:
        images, targets = prepare(batch, "cpu", False)[:2]
        network.train()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_function(network(images), targets)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        iteration += 1
        if iteration % 50 == 0:
            print(f"{args.tag}: iteration {iteration}, loss {np.mean(losses[-50:]):.3f}", flush=True)
        if iteration in evaluate_at:
            training_seconds += time.perf_counter() - started
            record = {"tag": args.tag, "iterations": iteration, "train_minutes": round(training_seconds / 60, 2),
                      "loss": round(float(np.mean(losses[-50:])), 4)}  # fmt: skip
            for keep in (False, True):
                result = evaluate_tiles(network, held_out, "cpu", roi_size=args.patch, out_size=args.out_size,
                                        keep_unmarked=keep, progress=False)  # fmt: skip
                suffix = "_keep_unmarked" if keep else ""
                record.update({f"{k}{suffix}": round(float(result["aggregate"][k]), 4) for k in SCORES})
            record["settings"] = {k: v for k, v in vars(args).items() if k not in ("data_dir", "log")}
            print(json.dumps(record), flush=True)
            with open(args.log, "a") as stream:
                stream.write(json.dumps(record) + "\n")
            started = time.perf_counter()
        if iteration >= args.iters:
            break


if __name__ == "__main__":
    main()
