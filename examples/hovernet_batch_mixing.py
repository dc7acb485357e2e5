"""Train HoVer-Net on real patches with synthetic samples mixed into every batch on the fly (batch-level mixing).

SyntheticBatchMixer wraps the trainer's prepare_batch (MONAI's PrepareBatchHoVerNet): for every real batch it
synthesises fresh samples on the trainer's device in the main process (the form for GPU synthesis), runs them through
the same HoVer-Net chain as the real patches, and appends them to the batch.

    python examples/hovernet_batch_mixing.py --data-dir /data/CoNSeP              # MONAI's HoVerNet, 256 -> 164
    python examples/hovernet_batch_mixing.py --data-dir /data/CoNSeP --encoder resnet18 --device cpu
    python examples/hovernet_batch_mixing.py --toy                                # toy data and sizes: seconds
"""

import argparse
import tempfile

import torch
from monai.apps.pathology.engines import PrepareBatchHoVerNet
from monai.apps.pathology.losses import HoVerNetLoss
from monai.data import DataLoader
from monai.engines import SupervisedTrainer
from monai.handlers import StatsHandler, from_engine

from monai_dafgan.data import SlidingWindowCropDataset, load_consep, make_toy_consep
from monai_dafgan.segmentation import build_hovernet, hovernet_train_transforms
from monai_dafgan.synthesis import NucleiSynthesizer, SyntheticBatchMixer, shipped_library

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--data-dir", help="CoNSeP-layout folder (Train/Images, Train/Labels); default: toy data")
parser.add_argument("--toy", action="store_true", help="64x64 patches of two toy tiles, a ResNet-18 encoder, 3 steps")
parser.add_argument("--encoder", default="hovernet", help="hovernet (MONAI's HoVerNet) or resnet18/34/50")
parser.add_argument("--epochs", type=int, default=50)
parser.add_argument("--synthetic-ratio", type=float, default=0.25, help="synthetic samples per real sample")
parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
args = parser.parse_args()
if args.toy:  # patch 64 -> 40 needs a ResNet encoder; MONAI's HoVerNet takes 256 -> 164 only
    encoder, patch, out, epochs, steps = "resnet18", 64, 40, 1, 3
    windows = dict(window=96, stride=32)
else:
    encoder, patch, out, epochs, steps = args.encoder, 256, 164, args.epochs, None
    windows = dict(window=540, stride=164, pad=188)  # HoVer-Net's patch extraction
data_dir = args.data_dir or make_toy_consep(tempfile.mkdtemp(), num_tiles=2, size=128)

chain = hovernet_train_transforms(patch_size=patch, out_size=out, augment=True)
real = SlidingWindowCropDataset(load_consep(data_dir, "Train"), **windows, transform=chain)
loader = DataLoader(real, batch_size=2 if args.toy else 16, shuffle=True, num_workers=0 if args.toy else 4)

mixer = SyntheticBatchMixer(
    NucleiSynthesizer.pretrained(device=args.device),
    point_source=shipped_library(),
    fraction=args.synthetic_ratio,
    sample_transform=chain,  # the chain the real patches went through
    spatial_size=patch,  # synthetic samples of the network's input size
    prepare_batch=PrepareBatchHoVerNet(extra_keys=["label_type", "hover_label_inst"]),
    num_types=4,
)
network = build_hovernet(encoder, out_classes=5, patch_size=patch, out_size=out).to(args.device)
trainer = SupervisedTrainer(
    device=torch.device(args.device),
    max_epochs=epochs,
    epoch_length=steps,
    train_data_loader=loader,
    network=network,
    optimizer=torch.optim.Adam(network.parameters(), 1e-4, weight_decay=1e-5),
    loss_function=HoVerNetLoss(),
    prepare_batch=mixer,
    train_handlers=[StatsHandler(tag_name="loss", output_transform=from_engine(["loss"], first=True))],
)
trainer.run()
print(f"mixed {mixer.num_synthesized} synthetic samples into {mixer.num_real_seen} real ones")
