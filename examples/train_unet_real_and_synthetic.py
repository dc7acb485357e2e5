"""Train a small MONAI segmenter on real + synthetic nuclei with plain MONAI code and MONAI's defaults.

Crops of real tiles and samples of the shipped DAFF-GAN generators (SyntheticNucleiDataset) are mixed by
MixedNucleiDataset; MONAI's DataLoader (default collate) and SupervisedTrainer (default prepare_batch, decollate)
train a BasicUNet to segment nuclei foreground.

    python examples/train_unet_real_and_synthetic.py --data-dir /data/CoNSeP   # real CoNSeP, 256x256, 20 epochs
    python examples/train_unet_real_and_synthetic.py --toy                     # toy data and sizes: seconds
"""

import argparse
import tempfile

import torch
from monai.data import DataLoader
from monai.engines import SupervisedTrainer
from monai.handlers import StatsHandler, from_engine
from monai.losses import DiceCELoss
from monai.networks.nets import BasicUNet
from monai.transforms import Compose, CopyItemsd, Lambdad, RandFlipd, ScaleIntensityRanged, SelectItemsd

from monai_dafgan.data import SlidingWindowCropDataset, load_consep, make_toy_consep
from monai_dafgan.synthesis import MixedNucleiDataset, NucleiSynthesizer, SyntheticNucleiDataset, shipped_library

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--data-dir", help="CoNSeP-layout folder (Train/Images, Train/Labels); default: toy data")
parser.add_argument("--toy", action="store_true", help="64x64 crops of two toy tiles, one epoch: a smoke run")
parser.add_argument("--epochs", type=int, default=20)
args = parser.parse_args()
size, epochs = (64, 1) if args.toy else (256, args.epochs)
data_dir = args.data_dir or make_toy_consep(tempfile.mkdtemp(), num_tiles=2, size=128 if args.toy else 512)

# real and synthetic samples must share a spatial size to be batched: crop the real tiles to the synthetic size
real = SlidingWindowCropDataset(load_consep(data_dir, "Train"), window=size)
synthetic = SyntheticNucleiDataset(
    NucleiSynthesizer.pretrained(device="cpu"), num_samples=len(real), spatial_size=size, seed=0,
    point_source=shipped_library(),
)
transform = Compose([
    ScaleIntensityRanged("image", a_min=0, a_max=255, b_min=0, b_max=1),
    CopyItemsd("label_inst", names="label"),
    Lambdad("label", lambda inst: (inst > 0).float()),  # nuclei foreground
    RandFlipd(["image", "label"], prob=0.5, spatial_axis=1),
    SelectItemsd(["image", "label", "name"]),
])
train = MixedNucleiDataset(real, synthetic, synthetic_fraction=0.38, transform=transform)
loader = DataLoader(train, batch_size=4, shuffle=True, num_workers=0 if args.toy else 4)

network = BasicUNet(spatial_dims=2, in_channels=3, out_channels=1, features=(16, 16, 32, 64, 128, 16))
trainer = SupervisedTrainer(
    device=torch.device("cpu"),
    max_epochs=epochs,
    train_data_loader=loader,
    network=network,
    optimizer=torch.optim.Adam(network.parameters(), 1e-3),
    loss_function=DiceCELoss(sigmoid=True),
    train_handlers=[StatsHandler(tag_name="loss", output_transform=from_engine(["loss"], first=True))],
)
trainer.run()
print(f"trained on {len(real)} real crops and {train.num_synthetic} synthetic samples per epoch")
