"""Write a synthetic dataset to disk once, then train on it with a stock MONAI pipeline.

The shipped DAFF-GAN generators write samples in CoNSeP layout (Images/*.png, Labels/*.mat); consep_file_list and
LoadNucleiSampled read them like real CoNSeP into a monai.data.CacheDataset, and MONAI transforms, DataLoader and
SupervisedTrainer do the rest with their defaults. The same lines train on real CoNSeP, or on both folders.

    python examples/synthesize_to_disk_and_train.py --out synthetic --num-samples 659   # the paper's 659 at 256x256
    python examples/synthesize_to_disk_and_train.py --toy                               # 8 samples of 64x64: seconds
"""

import argparse
import tempfile

import torch
from monai.data import CacheDataset, DataLoader
from monai.engines import SupervisedTrainer
from monai.handlers import StatsHandler, from_engine
from monai.losses import DiceCELoss
from monai.networks.nets import BasicUNet
from monai.transforms import AsDiscreted, Compose, CopyItemsd, RandFlipd, RandRotate90d, ScaleIntensityRanged

from monai_dafgan.data import LoadNucleiSampled, consep_file_list
from monai_dafgan.synthesis import NucleiSynthesizer, shipped_library, write_synthetic_dataset

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--out", help="folder for the synthetic dataset (default: a temporary folder)")
parser.add_argument("--num-samples", type=int, default=659)
parser.add_argument("--toy", action="store_true", help="8 samples of 64x64, one epoch: a smoke run")
parser.add_argument("--epochs", type=int, default=20)
args = parser.parse_args()
num_samples, size, epochs = (8, 64, 1) if args.toy else (args.num_samples, 256, args.epochs)
out = args.out or tempfile.mkdtemp()

write_synthetic_dataset(NucleiSynthesizer.pretrained(), shipped_library(), num_samples, out, spatial_size=size, seed=0)

files = consep_file_list(out, "Train")  # [{"image": png, "label": mat, "name": ...}], as for real CoNSeP
transform = Compose([
    LoadNucleiSampled(),  # -> image (3, H, W) 0..255, label_inst and label_type (1, H, W), as MetaTensors
    ScaleIntensityRanged("image", a_min=0, a_max=255, b_min=0, b_max=1),
    CopyItemsd("label_type", names="label"),
    AsDiscreted("label", to_onehot=5),  # background + the four nucleus types
    RandFlipd(["image", "label"], prob=0.5, spatial_axis=0),
    RandRotate90d(["image", "label"], prob=0.5),
])
dataset = CacheDataset(files, transform=transform, num_workers=0)  # loading is cached, augmentation is not
loader = DataLoader(dataset, batch_size=4, shuffle=True)

network = BasicUNet(spatial_dims=2, in_channels=3, out_channels=5, features=(16, 16, 32, 64, 128, 16))
trainer = SupervisedTrainer(
    device=torch.device("cuda" if torch.cuda.is_available() else "cpu"),
    max_epochs=epochs,
    train_data_loader=loader,
    network=network,
    optimizer=torch.optim.Adam(network.parameters(), 1e-3),
    loss_function=DiceCELoss(softmax=True),
    train_handlers=[StatsHandler(tag_name="loss", output_transform=from_engine(["loss"], first=True))],
)
trainer.run()
print(f"trained a 5-class segmenter on {len(dataset)} synthetic samples in {out}")
