"""A digit autoencoder with a Bitcodes bottleneck: each 8x8 image becomes a few dozen bits.

    python examples/digits_autoencoder.py [--bits 24] [--epochs 60] [--compare-bitcodes-pytorch] [--fast]

Uses scikit-learn's handwritten digits (shipped with the package, no download). Reports the
held-out reconstruction error against predicting the mean image, the bits per image against
the raw 64 pixels x 4 bits, how many distinct codes the test images use, and saves a PNG of
originals and reconstructions. --compare-bitcodes-pytorch trains the same model with
bitcodes_pytorch.Bitcodes too and reports both training times.
"""

import argparse
import os
import sys
import time

import torch
from sklearn.datasets import load_digits
from torch import nn
from tqdm import trange

from bitcodes_ext import Bitcodes, to_decimal

RAW_BITS_PER_IMAGE = 64 * 4  # 8x8 pixels of 17 grey levels (0..16), about 4 bits each


def load(seed=0, test_size=300):
    images = torch.tensor(load_digits().images, dtype=torch.float32).reshape(-1, 64) / 16.0
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return images[order[test_size:]], images[order[:test_size]]


class Autoencoder(nn.Module):
    """MLP encoder -> one Bitcodes token per image -> MLP decoder."""

    def __init__(self, quantizer, features=32, hidden=128):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(64, hidden), nn.GELU(), nn.Linear(hidden, features))
        self.quantizer = quantizer
        self.decoder = nn.Sequential(nn.Linear(features, hidden), nn.GELU(), nn.Linear(hidden, 64), nn.Sigmoid())

    def forward(self, images):
        # (batch, 1 token, features): the 3-D layout bitcodes-pytorch needs; ours takes any.
        quantized, bits = self.quantizer(self.encoder(images).unsqueeze(1))
        return self.decoder(quantized.squeeze(1)), bits.squeeze(1)


def make_model(num_bits, bitcodes_pytorch, seed):
    """The autoencoder with our Bitcodes, or with the package bitcodes-pytorch's."""
    torch.manual_seed(seed)
    features = 32
    if bitcodes_pytorch:
        from bitcodes_pytorch import Bitcodes as PackageBitcodes

        quantizer = PackageBitcodes(features, num_bits, temperature=1.0)
    else:
        quantizer = Bitcodes(features, num_bits, temperature=1.0)
    return Autoencoder(quantizer, features)


def train(model, images, epochs, batch_size=100, lr=3e-3, desc="training"):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    start = time.perf_counter()
    for _ in trange(epochs, desc=desc, leave=False):
        for batch in images[torch.randperm(len(images))].split(batch_size):
            reconstruction, _ = model(batch)
            loss = (reconstruction - batch).square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start


@torch.no_grad()
def evaluate(model, train_images, test_images, num_bits):
    model.eval()
    reconstruction, bits = model(test_images)
    codes = to_decimal(bits) if num_bits <= 63 else to_decimal(bits, group_size=32)
    distinct = len(torch.unique(codes.reshape(len(test_images), -1), dim=0))
    return dict(
        test_mse=(reconstruction - test_images).square().mean().item(),
        mean_image_mse=(train_images.mean(0) - test_images).square().mean().item(),
        bits_per_image=num_bits,
        raw_bits_per_image=RAW_BITS_PER_IMAGE,
        distinct_codes=distinct,
        test_images=len(test_images),
        active_bits=int((bits.float().mean(0) * (1 - bits.float().mean(0)) > 0).sum()),
        reconstruction=reconstruction,
    )


def save_grid(originals, reconstructions, path, count=12):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, count, figsize=(count * 0.9, 2.2))
    for i in range(count):
        for row, images in enumerate((originals, reconstructions)):
            axes[row, i].imshow(images[i].reshape(8, 8).numpy(), cmap="gray_r", vmin=0, vmax=1)
            axes[row, i].axis("off")
    axes[0, 0].set_title("original", fontsize=8, loc="left")
    axes[1, 0].set_title("reconstructed", fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bits", type=int, default=24, help="bits per image (16-32 is the interesting range)")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--fast", action="store_true", help="a few epochs, for the tests")
    parser.add_argument("--compare-bitcodes-pytorch", action="store_true", help="also train with bitcodes_pytorch.Bitcodes")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits_reconstructions.png"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    epochs = 15 if args.fast else args.epochs
    torch.set_num_threads(args.threads)

    train_images, test_images = load(args.seed)
    model = make_model(args.bits, bitcodes_pytorch=False, seed=args.seed)
    seconds = train(model, train_images, epochs, desc="bitcodes_ext")
    report = evaluate(model, train_images, test_images, args.bits)
    save_grid(test_images, report.pop("reconstruction"), args.out)

    print(f"trained {epochs} epochs on {len(train_images)} images in {seconds:.1f} s (bitcodes_ext)")
    print(f"held-out MSE {report['test_mse']:.4f}  (predicting the mean image: {report['mean_image_mse']:.4f})")
    print(f"{args.bits} bits per image against {RAW_BITS_PER_IMAGE} raw ({RAW_BITS_PER_IMAGE / args.bits:.1f}x smaller)")
    print(f"{report['distinct_codes']} distinct codes among {report['test_images']} test images; "
          f"{report['active_bits']} of {args.bits} bits vary")
    print(f"wrote {args.out}")

    if args.compare_bitcodes_pytorch:
        package = make_model(args.bits, bitcodes_pytorch=True, seed=args.seed)
        package_seconds = train(package, train_images, epochs, desc="bitcodes-pytorch")
        package_report = evaluate(package, train_images, test_images, args.bits)
        print(f"bitcodes-pytorch: {package_seconds:.1f} s, held-out MSE {package_report['test_mse']:.4f}; "
              f"bitcodes_ext: {seconds:.1f} s ({package_seconds / seconds:.2f}x)")
        report["bitcodes_pytorch_seconds"] = package_seconds
    report["seconds"] = seconds
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
