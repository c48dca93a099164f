"""An image tokenizer trained on real photos with each quantizer at the same bits per token.

    python examples/train_tokenizer.py [--steps 1500] [--methods vq-ema,bsq,...] [--quick]

A small convolutional autoencoder maps each 32x32 RGB patch to 8x8 tokens of 12 latent channels
and back; every method quantizes a token to one of 2^12 = 4096 codes (0.75 bits per pixel):

  vq-ema            VectorQuantizer, 4096 codes, EMA codebook, k-means initialised
  rvq-2x64          ResidualVectorQuantizer, 2 stages of 64 codes, EMA, k-means initialised
  bitcodes          Bitcodes, 12 bits (its training noise is its only usage pressure)
  bitcodes+entropy  Bitcodes plus binary_entropy(layer.bit_logits(z)) as a usage term
  lfq               LookupFreeQuantizer, 12 bits
  bsq               LookupFreeQuantizer(spherical=True), 12 bits
  vqp-lfq           vector-quantize-pytorch's LFQ at the same settings as lfq (the outside anchor)

Same architecture, initial weights, patches, steps, optimizer and seed for every method. The
photos ship with scikit-image and scikit-learn (no download). Training crops come from four
photos; motorcycle_left is the validation photo (what --sweep tunes on) and chelsea and
flower are held out, by photo, for the reported numbers. Per method: held-out PSNR (the photos
tiled into patches), code usage on the held-out tokens (fraction of the 4096 codes used and
perplexity), the median time of a training step and the peak memory growth of training (each
method in its own process unless --in-process). Writes <out>/tokenizer-<date>.json and .png
(reconstructions of held-out crops), atomically. --quick is a tiny run for the test suite.
"""

import argparse
import datetime
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn

from bitcodes_ext import (
    Bitcodes,
    LookupFreeQuantizer,
    ResidualVectorQuantizer,
    VectorQuantizer,
    binary_entropy,
    codebook_usage,
    to_decimal,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from results import write_atomically  # noqa: E402

BITS = 12
NUM_CODES = 1 << BITS
CHANNELS = BITS  # latent channels per token: LFQ and BSQ quantize them without projections
PATCH, DOWNSAMPLE = 32, 4
TRAIN_PHOTOS = ("astronaut", "coffee", "rocket", "china")
VALIDATION_PHOTOS = ("motorcycle_left",)
TEST_PHOTOS = ("chelsea", "flower")
METHODS = ("vq-ema", "rvq-2x64", "bitcodes", "bitcodes+entropy", "lfq", "bsq", "vqp-lfq")
# Each method's tuned setting (see --sweep and benchmarks/NOTES.md); the binary family's
# entropy weight scales entropy in nats against a per-pixel MSE of about 1e-3.
FULL = dict(steps=1500, batch=16, width=64, init_patches=256)
QUICK = dict(steps=60, batch=8, width=32, init_patches=64)  # 64 patches: 4096 tokens for k-means of 4096 codes
DEFAULTS = {
    "entropy_weight": {"bitcodes+entropy": 0.01, "lfq": 0.01, "bsq": 0.01, "vqp-lfq": 0.01},
    "dead_code_threshold": {"vq-ema": 0.1, "rvq-2x64": 0.0},
    "commitment_weight": 0.25,
}


# Data --------------------------------------------------------------------------------------

def load_photos(names):
    """{name: (3, H, W) float32 in [0, 1]} from the photos bundled with scikit-image
    (skimage.data) and scikit-learn (load_sample_images: china, flower)."""
    photos = {}
    sklearn_names = {"china", "flower"} & set(names)
    if sklearn_names:
        from sklearn.datasets import load_sample_images

        bundle = load_sample_images()
        for path, image in zip(bundle.filenames, bundle.images):
            name = os.path.splitext(os.path.basename(path))[0]
            if name in sklearn_names:
                photos[name] = image
    from skimage import data

    for name in names:
        if name == "motorcycle_left":
            photos[name] = data.stereo_motorcycle()[0]  # the left view of a stereo pair
        elif name not in photos:
            photos[name] = getattr(data, name)()
    return {name: torch.tensor(photos[name][..., :3]).permute(2, 0, 1).float().div(255) for name in names}


def random_patches(photos, count, generator):
    """count random PATCH x PATCH crops (random photo, position and horizontal flip)."""
    images = list(photos.values())
    out = torch.empty(count, 3, PATCH, PATCH)
    for i in range(count):
        image = images[int(torch.randint(len(images), (1,), generator=generator))]
        top = int(torch.randint(image.shape[1] - PATCH + 1, (1,), generator=generator))
        left = int(torch.randint(image.shape[2] - PATCH + 1, (1,), generator=generator))
        crop = image[:, top : top + PATCH, left : left + PATCH]
        out[i] = crop.flip(2) if bool(torch.randint(2, (1,), generator=generator)) else crop
    return out


def tile(image):
    """(3, H, W) -> (rows * cols, 3, PATCH, PATCH): the whole patches, row-major."""
    rows, cols = image.shape[1] // PATCH, image.shape[2] // PATCH
    crop = image[:, : rows * PATCH, : cols * PATCH]
    return crop.reshape(3, rows, PATCH, cols, PATCH).permute(1, 3, 0, 2, 4).reshape(-1, 3, PATCH, PATCH), (rows, cols)


def untile(patches, grid):
    rows, cols = grid
    return patches.reshape(rows, cols, 3, PATCH, PATCH).permute(2, 0, 3, 1, 4).reshape(3, rows * PATCH, cols * PATCH)


def psnr(mse):
    return 10 * math.log10(1.0 / mse) if mse > 0 else math.inf


# Model -------------------------------------------------------------------------------------

class Autoencoder(nn.Module):
    """(B, 3, 32, 32) -> tokens (B, 8, 8, CHANNELS) -> quantizer -> (B, 3, 32, 32)."""

    def __init__(self, width=64):
        super().__init__()
        # GroupNorm before the last layer of the encoder, as VQGAN-style encoders have: without
        # it the default init makes the tokens' signs almost constant at the start (the 1x1
        # conv's bias dominates), and the binary quantizers begin on a single code.
        self.encoder = nn.Sequential(
            nn.Conv2d(3, width, 4, 2, 1), nn.GELU(),
            nn.Conv2d(width, width, 4, 2, 1), nn.GroupNorm(8, width), nn.GELU(),
            nn.Conv2d(width, width, 3, 1, 1), nn.GroupNorm(8, width), nn.GELU(),
            nn.Conv2d(width, CHANNELS, 1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(CHANNELS, width, 3, 1, 1), nn.GroupNorm(8, width), nn.GELU(),
            nn.Conv2d(width, width, 3, 1, 1), nn.GroupNorm(8, width), nn.GELU(),
            nn.ConvTranspose2d(width, width, 4, 2, 1), nn.GELU(),
            nn.ConvTranspose2d(width, 3, 4, 2, 1),
        )
        self.quantizer = None

    def encode(self, images):
        # Pixels centred to [-1, 1]; tokens last: (B, h, w, CHANNELS).
        return self.encoder(2 * images - 1).permute(0, 2, 3, 1)

    def forward(self, images):
        z = self.encode(images)
        quantized, codes, loss = self.quantizer(z.reshape(-1, CHANNELS))
        out = self.decoder(quantized.reshape(z.shape).permute(0, 3, 1, 2))
        return (out + 1) / 2, codes.reshape(z.shape[:-1]), loss


# Quantizers: each maps tokens (N, CHANNELS) to (quantized, codes (N,) in [0, 4096), aux loss) -

class EmaVQ(nn.Module):
    def __init__(self, commitment_weight, dead_code_threshold, **_):
        super().__init__()
        self.layer = VectorQuantizer(NUM_CODES, CHANNELS, commitment_weight, ema=True, dead_code_threshold=dead_code_threshold)

    def init_codebook(self, z):
        self.layer.init_kmeans(z)

    def forward(self, z):
        return self.layer(z)



class ResidualVQ(nn.Module):
    STAGES, CODES = 2, 64  # 64^2 = 4096: 6 + 6 bits

    def __init__(self, commitment_weight, dead_code_threshold, **_):
        super().__init__()
        self.layer = ResidualVectorQuantizer(
            self.STAGES, self.CODES, CHANNELS, commitment_weight, ema=True, dead_code_threshold=dead_code_threshold
        )

    def init_codebook(self, z):
        self.layer.init_kmeans(z)

    def forward(self, z):
        quantized, codes, loss = self.layer(z)
        return quantized, codes[:, 0] * self.CODES + codes[:, 1], loss  # the joint 12-bit code



class BitcodesQ(nn.Module):
    def __init__(self, entropy_weight=0.0, **_):
        super().__init__()
        self.layer = Bitcodes(CHANNELS, BITS)
        self.entropy_weight = entropy_weight

    def forward(self, z):
        quantized, bits = self.layer(z)
        loss = z.new_zeros(())
        if self.training and self.entropy_weight:
            per_sample, codebook = binary_entropy(self.layer.bit_logits(z))
            loss = self.entropy_weight * (per_sample - codebook)
        return quantized, to_decimal(bits), loss



class LookupFree(nn.Module):
    def __init__(self, entropy_weight, commitment_weight, spherical=False, **_):
        super().__init__()
        self.layer = LookupFreeQuantizer(
            BITS, entropy_weight=entropy_weight, commitment_weight=commitment_weight, spherical=spherical
        )

    def forward(self, z):
        return self.layer(z)



class PeerLFQ(nn.Module):
    """vector-quantize-pytorch's LFQ with lfq's settings (inv_temperature 100 is both defaults)."""

    def __init__(self, entropy_weight, commitment_weight, **_):
        super().__init__()
        from vector_quantize_pytorch import LFQ

        self.layer = LFQ(
            dim=CHANNELS, codebook_size=NUM_CODES, entropy_loss_weight=entropy_weight, commitment_loss_weight=commitment_weight
        )

    def forward(self, z):
        quantized, codes, loss = self.layer(z.unsqueeze(0))
        return quantized.squeeze(0), codes.squeeze(0).long(), loss



def make_quantizer(method, settings):
    entropy_weight = settings["entropy_weight"].get(method, 0.0)
    common = dict(commitment_weight=settings["commitment_weight"], dead_code_threshold=settings["dead_code_threshold"].get(method, 0.0))
    makers = {
        "vq-ema": lambda: EmaVQ(**common),
        "rvq-2x64": lambda: ResidualVQ(**common),
        "bitcodes": lambda: BitcodesQ(),
        "bitcodes+entropy": lambda: BitcodesQ(entropy_weight=entropy_weight),
        "lfq": lambda: LookupFree(entropy_weight, **common),
        "bsq": lambda: LookupFree(entropy_weight, spherical=True, **common),
        "vqp-lfq": lambda: PeerLFQ(entropy_weight, **common),
    }
    if method not in makers:
        raise ValueError(f"train_tokenizer: method must be one of {METHODS}, got {method!r}")
    return makers[method]()


# Memory: the peak RSS of training alone (Linux: /proc/self/clear_refs resets the peak). ------

def _status_kib(key):
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M).group(1))


def reset_peak_rss():
    """The current RSS in MiB, after resetting the peak to it."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS") / 1024


def peak_rss():
    return _status_kib("VmHWM") / 1024


# Training and evaluation -------------------------------------------------------------------

def train_and_evaluate(method, photos, args, settings, measure_memory):
    """Trains one method; returns its row of results and its held-out reconstructions."""
    torch.manual_seed(args.seed)
    model = Autoencoder(args.width)  # the same initial weights for every method
    model.quantizer = make_quantizer(method, settings)
    data = torch.Generator().manual_seed(args.seed)  # the same patches, in the same order
    train_photos = {name: photos[name] for name in TRAIN_PHOTOS}
    init_patches = random_patches(train_photos, args.init_patches, data)  # drawn by every method alike
    if hasattr(model.quantizer, "init_codebook"):
        with torch.no_grad():
            model.quantizer.init_codebook(model.encode(init_patches).reshape(-1, CHANNELS))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    model.train()
    rss_before = reset_peak_rss() if measure_memory else None
    load_before = os.getloadavg()[0]
    times, losses = [], []
    for _ in range(args.steps):
        batch = random_patches(train_photos, args.batch, data)
        start = time.perf_counter()
        reconstruction, codes, aux_loss = model(batch)
        mse = F.mse_loss(reconstruction, batch)
        optimizer.zero_grad(set_to_none=True)
        (mse + aux_loss).backward()
        optimizer.step()
        schedule.step()
        times.append(time.perf_counter() - start)
        losses.append(mse.item())
    row = dict(
        method=method,
        train_mse_last_100=statistics.fmean(losses[-100:]),
        step_ms_median=1e3 * statistics.median(times[min(10, len(times) // 2):]),
        train_seconds=sum(times),
        peak_rss_growth_mib=peak_rss() - rss_before if measure_memory else None,
        # The 1-minute load average before and after training: other work on the machine
        # slows the steps (and OpenMP stalls when a core is busy).
        load_average_1min=(load_before, os.getloadavg()[0]),
    )
    row.update(evaluate(model, {name: photos[name] for name in args.eval_photos}))
    return row


@torch.no_grad()
def evaluate(model, photos):
    """Held-out PSNR over every pixel of the tiled photos, and the usage of their codes."""
    model.eval()
    squared_error, pixels, codes, per_photo, images = 0.0, 0, [], {}, {}
    for name, image in photos.items():
        patches, grid = tile(image)
        out, photo_codes = zip(*(model(chunk)[:2] for chunk in patches.split(256)))
        out = untile(torch.cat(out).clamp(0, 1), grid)
        error = (out - image[:, : out.shape[1], : out.shape[2]]).square()
        squared_error, pixels = squared_error + error.sum().item(), pixels + error.numel()
        per_photo[name] = psnr(error.mean().item())
        codes.append(torch.cat(photo_codes).reshape(-1))
        images[name] = (out * 255).round().to(torch.uint8)
    codes = torch.cat(codes)
    usage = codebook_usage(codes, NUM_CODES)
    return dict(
        psnr_db=psnr(squared_error / pixels),
        psnr_db_by_photo=per_photo,
        fraction_used=usage.fraction_used.item(),
        perplexity=usage.perplexity.item(),
        code_min=int(codes.min()),
        code_max=int(codes.max()),
        tokens=codes.numel(),
        reconstructions=images,
    )


def mean_patch_psnr(photos, eval_photos):
    """What predicting the training photos' mean patch (in effect their mean colour) scores."""
    mean = torch.stack([tile(photos[name])[0].mean(0) for name in TRAIN_PHOTOS]).mean(0)
    errors = [(tile(photos[name])[0] - mean).square() for name in eval_photos]
    return psnr(torch.cat([e.reshape(-1) for e in errors]).mean().item())


# Isolation: each method in its own process, so that its peak memory is its own -------------

def run_isolated(method, argv):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "row.pt")
        subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--methods", method, "--child-out", path], check=True)
        return torch.load(path)


def strip_child_args(argv):
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--methods", "--child-out", "--out"):
            skip = True
        elif not a.startswith(("--methods=", "--child-out=", "--out=")):
            out.append(a)
    return out


# Output --------------------------------------------------------------------------------------

def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M).group(1)
    except (OSError, AttributeError):
        pass
    return dict(cpu=cpu, threads=torch.get_num_threads(), torch=torch.__version__, load_average=os.getloadavg())


def save_png(rows, photos, path, crop=(96, 128)):
    """Per held-out photo, a crop of the original and of each method's reconstruction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows[0]["reconstructions"])
    fig, axes = plt.subplots(len(names), len(rows) + 1, figsize=(2.1 * (len(rows) + 1), 1.9 * len(names)), squeeze=False)
    for i, name in enumerate(names):
        height, width = rows[0]["reconstructions"][name].shape[1:]
        top, left = (height - crop[0]) // 2, (width - crop[1]) // 2
        window = (slice(None), slice(top, top + crop[0]), slice(left, left + crop[1]))
        original = (photos[name] * 255).round().to(torch.uint8)
        panels = [("original", original)] + [(r["method"], r["reconstructions"][name]) for r in rows]
        for ax, (title, image) in zip(axes[i], panels):
            ax.imshow(image[window].permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if title != "original":
                title += f"\n{next(r for r in rows if r['method'] == title)['psnr_db_by_photo'][name]:.2f} dB"
            ax.set_title(title, fontsize=7)
        axes[i, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(f"held-out crops, {BITS} bits per 4x4-pixel token ({BITS / DOWNSAMPLE**2:.2f} bits per pixel)", fontsize=8)
    fig.tight_layout()
    write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=110), mode="wb")
    plt.close(fig)


def table(rows, baseline):
    lines = [
        f"{'method':18} {'PSNR dB':>8} {'used':>6} {'perplexity':>10} {'ms/step':>8} {'peak MiB':>8}",
    ]
    for r in rows:
        memory = f"{r['peak_rss_growth_mib']:8.0f}" if r["peak_rss_growth_mib"] is not None else f"{'-':>8}"
        lines.append(
            f"{r['method']:18} {r['psnr_db']:8.2f} {r['fraction_used']:6.3f} {r['perplexity']:10.0f} "
            f"{r['step_ms_median']:8.1f} {memory}"
        )
    lines.append(f"{'mean patch':18} {baseline:8.2f}")
    return "\n".join(lines)


# Entry point ---------------------------------------------------------------------------------

def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated, from: " + ", ".join(METHODS))
    parser.add_argument("--steps", type=int, help=f"training steps (default {FULL['steps']}, --quick {QUICK['steps']})")
    parser.add_argument("--batch", type=int, help=f"patches per step, 64 tokens each (default {FULL['batch']}, --quick {QUICK['batch']})")
    parser.add_argument("--width", type=int, help=f"conv channels (default {FULL['width']}, --quick {QUICK['width']})")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--init-patches", type=int, help="patches whose tokens k-means initialises the VQ codebooks")
    parser.add_argument("--entropy-weight", type=float, help="one entropy weight for every method that has one")
    parser.add_argument("--dead-code-threshold", type=float, help="one dead-code threshold for vq-ema and rvq-2x64")
    parser.add_argument("--validation", action="store_true", help="report on the validation photo instead of the held-out ones")
    parser.add_argument("--quick", action="store_true", help="a tiny run, for the test suite")
    parser.add_argument("--in-process", action="store_true", help="every method in this process (peak memory not reported)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"), help="folder, or a .json path")
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.eval_photos = VALIDATION_PHOTOS if args.validation else TEST_PHOTOS
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    for method in methods:
        if method not in METHODS:
            raise SystemExit(f"train_tokenizer: unknown method {method!r}; choose from {', '.join(METHODS)}")
    settings = dict(DEFAULTS)
    for key in ("entropy_weight", "dead_code_threshold"):
        if getattr(args, key) is not None:
            settings[key] = {m: getattr(args, key) for m in DEFAULTS[key]}
    photos = load_photos(TRAIN_PHOTOS + tuple(args.eval_photos))
    if args.child_out:
        (method,) = methods
        torch.save(train_and_evaluate(method, photos, args, settings, measure_memory=True), args.child_out)
        return None

    rows = []
    for method in methods:
        print(f"== {method}", flush=True)
        if args.in_process:
            row = train_and_evaluate(method, photos, args, settings, measure_memory=False)
        else:
            row = run_isolated(method, strip_child_args(argv))
        rows.append(row)
        print(table([row], mean_patch_psnr(photos, args.eval_photos)).splitlines()[1], flush=True)
    baseline = mean_patch_psnr(photos, args.eval_photos)
    print(table(rows, baseline))

    stem = args.out[: -len(".json")] if args.out.endswith(".json") else os.path.join(
        args.out, f"tokenizer-{datetime.date.today().isoformat()}" + ("-quick" if args.quick else "")
    )
    os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
    save_png(rows, photos, stem + ".png")
    report = dict(
        meta=dict(
            machine(), bits_per_token=BITS, num_codes=NUM_CODES, patch=PATCH, downsample=DOWNSAMPLE,
            train_photos=TRAIN_PHOTOS, eval_photos=list(args.eval_photos), steps=args.steps, batch_patches=args.batch,
            width=args.width, lr=args.lr, seed=args.seed, settings=settings, isolated=not args.in_process,
            mean_patch_psnr_db=baseline, date=datetime.datetime.now().isoformat(timespec="seconds"),
        ),
        results=[{k: v for k, v in r.items() if k != "reconstructions"} for r in rows],
    )
    write_atomically(stem + ".json", lambda f: json.dump(report, f, indent=1))
    print(f"wrote {stem}.json and {stem}.png")
    return report


if __name__ == "__main__":
    main()
