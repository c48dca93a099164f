"""Rate-distortion study: quantizers at equal bits per block on a held-out photo, against JPEG
and WebP, and the same quantizers on the digits at equal bits per image.

    python benchmarks/rate_distortion.py [--quick | --fast] [--threads 2] [--out benchmarks/results]

Photo (examples/compress_image.py's set-up): learned on china.jpg (overlapping 8x8x3 blocks),
measured on flower.jpg. Every learned method codes a block as the 8-bit index of its mean colour
in a fixed RGB 3-3-2 palette plus b bits for the rest of the block, written with
bitcodes_ext.codec to a file whose size on disk gives the bits per pixel:

  k-means VQ     VectorQuantizer(2^b codes), k-means initialised (b = 8, 12: feasible here)
  RVQ            ResidualVectorQuantizer, R stages of 2^(b/R) codes (256 codes: R = b/8;
                 b = 12: two stages of 64), k-means initialised stage by stage
  RVQ, no colour R = (8 + b)/8 stages of 256 codes on the raw blocks, without the palette
  Bitcodes       Bitcodes(192, b) as the quantizer of the block, codebook trained with the
                 straight-through estimator on the reconstruction MSE
  Bitcodes AE    MLP encoder -> Bitcodes(32, b) -> MLP decoder, trained end to end on the MSE
  JPEG, WebP     Pillow at a sweep of qualities, bits per pixel from the encoded size; the
                 table interpolates their PSNR at each row's bits per pixel

PSNR is on 8-bit RGB against the photo as shipped. Digits: bits per image, PSNR at peak 1.
Writes rate-distortion-<date>[-quick|-fast].{json,csv,png} and prints the README's tables.
--quick (what `make bench --quick` runs) and --fast (the tests) use fewer training blocks,
epochs, rates and qualities.
"""

import argparse
import csv
import datetime
import io
import json
import math
import os
import platform
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples"))

import compress_image as photo  # noqa: E402  (blocks, palette, PSNR: the example's set-up)

from bitcodes_ext import Bitcodes, ResidualVectorQuantizer, VectorQuantizer, codec, to_bits, to_decimal, vq  # noqa: E402

BLOCK = 8
FEATURES = 3 * BLOCK * BLOCK
COLOUR_BITS = 8
JPEG_QUALITIES = [2, 4, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 65, 80, 90]
WEBP_QUALITIES = [0, 2, 5, 10, 15, 20, 30, 40, 50, 65, 80, 90]

SETTINGS = {
    # stride of the training blocks, Lloyd iterations, epochs (direct, autoencoder), rates
    "full": dict(stride=2, iters=20, epochs=20, ae_epochs=20, bits=[8, 12, 16, 24, 32], vq_bits=[8, 12],
                 digits_bits=[8, 16, 24, 32], digits_epochs=60, jpeg=JPEG_QUALITIES, webp=WEBP_QUALITIES, repeats=3),
    "quick": dict(stride=4, iters=10, epochs=8, ae_epochs=8, bits=[8, 16, 24, 32], vq_bits=[8],
                  digits_bits=[8, 16, 24], digits_epochs=30, jpeg=JPEG_QUALITIES, webp=WEBP_QUALITIES, repeats=1),
    "fast": dict(stride=8, iters=4, epochs=2, ae_epochs=3, bits=[8, 16], vq_bits=[8],
                 digits_bits=[8, 16], digits_epochs=8, jpeg=[5, 20, 50], webp=[5, 30], repeats=1),
}


# --- the learned methods: fit on training vectors, codes (N, m) of given widths, and back ---

class KMeansVQ:
    def __init__(self, bits, iters):
        self.name, self.bits, self.widths, self.iters = "k-means VQ", bits, [bits], iters

    def fit(self, x):
        torch.manual_seed(0)
        self.vq = VectorQuantizer(1 << self.bits, x.shape[1]).eval()
        self.vq.init_kmeans(x, iters=self.iters)

    def encode(self, x):
        return self.vq.nearest(x)[:, None]

    def decode(self, codes):
        return self.vq.from_codes(codes[:, 0])


class RVQStages:
    """The first `stages` stages of a fitted ResidualVectorQuantizer (greedy stage-by-stage
    k-means, so they are what fitting `stages` stages alone gives)."""

    def __init__(self, rvq, stages, name="RVQ", fit_seconds=0.0):
        self.name, self.rvq, self.stages, self.fit_seconds = name, rvq, stages, fit_seconds
        code_bits = int(math.log2(rvq.num_codes))
        self.bits, self.widths = stages * code_bits, [code_bits] * stages

    def fit(self, x):
        pass  # fitted once for all prefixes; fit_seconds is that fit's time

    def encode(self, x):
        return self.rvq.encode(x, num_stages=self.stages)

    def decode(self, codes):
        return self.rvq.from_codes(codes)


def fit_rvq(x, stages, codes, iters):
    """(rvq, seconds): stages of `codes` codes, k-means initialised stage by stage."""
    torch.manual_seed(0)
    start = time.perf_counter()
    rvq = ResidualVectorQuantizer(stages, codes, x.shape[1]).eval()
    rvq.init_kmeans(x, iters=iters)
    return rvq, time.perf_counter() - start


def train_straight_through(parameters, loss_of, x, epochs, lr, batch=256, seed=0):
    """Adam with a cosine schedule on minibatches of x; loss_of(batch) in training mode."""
    optimizer = torch.optim.Adam(parameters, lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(epochs, 1))
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for rows in torch.randperm(len(x), generator=generator).split(batch):
            loss = loss_of(x[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()


class DirectBitcodes:
    """Bitcodes(features, b) on the vectors themselves (scaled to unit variance): each bit picks
    one vector of its pair, the reconstruction is their sum."""

    def __init__(self, bits, epochs, lr=1e-2):
        self.name, self.bits, self.widths, self.epochs, self.lr = "Bitcodes", bits, [1] * bits, epochs, lr

    def fit(self, x):
        torch.manual_seed(0)
        self.scale = float(x.std())
        self.layer = Bitcodes(x.shape[1], self.bits, temperature=1.0)
        with torch.no_grad():
            self.layer.codebook.normal_(0, 0.1)
        self.layer.train()
        train_straight_through(self.layer.parameters(), lambda rows: (self.layer(rows / self.scale)[0] * self.scale - rows).square().mean(),
                               x, self.epochs, self.lr)
        self.layer.eval()

    @torch.no_grad()
    def encode(self, x):
        return self.layer(x / self.scale)[1]

    @torch.no_grad()
    def decode(self, codes):
        return self.layer.from_bits(codes) * self.scale


class BitcodesAutoencoder:
    """MLP encoder -> Bitcodes(32, b) -> MLP decoder, on vectors scaled to unit variance."""

    def __init__(self, bits, epochs, hidden=256, features=32, lr=1e-3):
        self.name, self.bits, self.widths = "Bitcodes AE", bits, [1] * bits
        self.epochs, self.hidden, self.features, self.lr = epochs, hidden, features, lr

    def fit(self, x):
        torch.manual_seed(0)
        nn = torch.nn
        dim = x.shape[1]
        self.scale = float(x.std())
        self.encoder = nn.Sequential(nn.Linear(dim, self.hidden), nn.GELU(), nn.Linear(self.hidden, self.features))
        self.quantizer = Bitcodes(self.features, self.bits, temperature=1.0)
        self.decoder = nn.Sequential(nn.Linear(self.features, self.hidden), nn.GELU(), nn.Linear(self.hidden, dim))
        modules = nn.ModuleList([self.encoder, self.quantizer, self.decoder]).train()

        def loss_of(rows):
            y, _ = self.quantizer(self.encoder(rows / self.scale))
            return (self.decoder(y) * self.scale - rows).square().mean()

        train_straight_through(modules.parameters(), loss_of, x, self.epochs, self.lr)
        modules.eval()

    @torch.no_grad()
    def encode(self, x):
        return self.quantizer(self.encoder(x / self.scale))[1]

    @torch.no_grad()
    def decode(self, codes):
        return self.decoder(self.quantizer.from_bits(codes)) * self.scale


# --- codes to a file and back: every code of a block back to back, in its own width ---

def save_codes(path, codes, widths, meta):
    """codes (N, m) with code j in widths[j] bits -> one codec file of 1-bit codes, so the file
    holds exactly sum(widths) bits per block (whatever the widths)."""
    bits = torch.cat([to_bits(codes[:, j], w) for j, w in enumerate(widths)], dim=1)
    codec.save(path, bits, 1, meta=dict(meta, widths=widths))


def load_codes(path):
    bits, meta = codec.load(path)
    columns, start = [], 0
    for width in meta["widths"]:
        columns.append(to_decimal(bits[:, start : start + width]))
        start += width
    return torch.stack(columns, dim=1), meta


def timed(function, repeats):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return result, sorted(times)[len(times) // 2]


# --- the photo study ---

class PhotoCodec:
    """A method behind the optional colour stage, on the held-out photo's blocks."""

    def __init__(self, method, colour):
        self.method, self.colour, self.palette = method, colour, photo.palette()

    def prepare(self, blocks):
        """(training vectors for the method, colour codes)"""
        if not self.colour:
            return blocks, None
        colours, _ = vq(photo.block_means(blocks, BLOCK), self.palette)
        return blocks - photo.flat_blocks(self.palette[colours], BLOCK), colours

    def encode(self, image, path):
        blocks = photo.image_blocks(image, BLOCK)
        x, colours = self.prepare(blocks)
        codes = self.method.encode(x)
        widths = list(self.method.widths)
        if self.colour:
            codes, widths = torch.cat([colours[:, None], codes], dim=1), [COLOUR_BITS] + widths
        save_codes(path, codes, widths, {"height": image.shape[1], "width": image.shape[2], "block": BLOCK, "colour": self.colour})

    def decode(self, path):
        codes, meta = load_codes(path)
        if self.colour:
            blocks = photo.flat_blocks(self.palette[codes[:, 0]], BLOCK) + self.method.decode(codes[:, 1:])
        else:
            blocks = self.method.decode(codes)
        return photo.to_uint8(photo.assemble(blocks, BLOCK, meta["height"], meta["width"]))


def photo_methods(settings, train_blocks):
    """Yields (method, colour stage?) with the methods fitted; RVQ prefixes share one fit."""
    bits = settings["bits"]
    residual, _ = PhotoCodec(None, True).prepare(train_blocks)
    for b in settings["vq_bits"]:
        yield KMeansVQ(b, settings["iters"]), True
    eight = [b for b in bits if b % 8 == 0]
    rvq, seconds = fit_rvq(residual, max(eight) // 8, 256, settings["iters"])
    for b in bits:
        if b % 8 == 0:
            yield RVQStages(rvq, b // 8, fit_seconds=seconds), True
        elif b % 2 == 0:  # two stages of 2^(b/2) codes
            pair, pair_seconds = fit_rvq(residual, 2, 1 << (b // 2), settings["iters"])
            yield RVQStages(pair, 2, fit_seconds=pair_seconds), True
    raw_stages = [(COLOUR_BITS + b) // 8 for b in eight]
    raw, seconds = fit_rvq(train_blocks, max(raw_stages), 256, settings["iters"])
    for stages in raw_stages:
        yield RVQStages(raw, stages, name="RVQ, no colour stage", fit_seconds=seconds), False
    for b in bits:
        yield DirectBitcodes(b, settings["epochs"]), True
    for b in bits:
        yield BitcodesAutoencoder(b, settings["ae_epochs"]), True


def pillow_anchors(image8, qualities, fmt, repeats):
    """(format, quality) rows: bpp from the encoded bytes, PSNR of the decoded image."""
    from PIL import Image

    import numpy as np

    array = np.ascontiguousarray(image8.permute(1, 2, 0).numpy())
    pixels = array.shape[0] * array.shape[1]
    rows = []
    for quality in qualities:
        def encode():
            buffer = io.BytesIO()
            Image.fromarray(array).save(buffer, fmt, quality=quality)
            return buffer.getvalue()

        data, encode_seconds = timed(encode, repeats)
        decoded, decode_seconds = timed(lambda: Image.open(io.BytesIO(data)).convert("RGB"), repeats)
        decoded = torch.from_numpy(np.array(decoded)).permute(2, 0, 1)
        rows.append(dict(study="photo", method=fmt.replace("WEBP", "WebP"), quality=quality, bits_per_block=None,
                         bytes=len(data), bpp=8 * len(data) / pixels, psnr=photo.psnr(decoded, image8),
                         encode_ms=1e3 * encode_seconds, decode_ms=1e3 * decode_seconds, train_s=None))
    return rows


def photo_study(settings, work_dir):
    photos = photo.load_photos()
    train, test = photos["china.jpg"], photos["flower.jpg"]
    original = photo.to_uint8(test)
    pixels = test.shape[1] * test.shape[2]
    train_blocks = photo.training_blocks(train, BLOCK, settings["stride"])
    rows = []
    for method, colour in photo_methods(settings, train_blocks):
        coder = PhotoCodec(method, colour)
        x, _ = coder.prepare(train_blocks)
        start = time.perf_counter()
        method.fit(x)
        train_seconds = time.perf_counter() - start + getattr(method, "fit_seconds", 0.0)
        path = os.path.join(work_dir, f"{method.name.replace(' ', '_').replace(',', '')}-{method.bits}.bcx")
        with torch.inference_mode():
            _, encode_seconds = timed(lambda: coder.encode(test, path), settings["repeats"])
            decoded, decode_seconds = timed(lambda: coder.decode(path), settings["repeats"])
        size = os.path.getsize(path)
        total_bits = method.bits + (COLOUR_BITS if colour else 0)
        rows.append(dict(study="photo", method=method.name, quality=None, bits_per_block=total_bits, file=os.path.basename(path), bytes=size,
                         bpp=8 * size / pixels, psnr=photo.psnr(decoded, original), encode_ms=1e3 * encode_seconds,
                         decode_ms=1e3 * decode_seconds, train_s=train_seconds))
        print(f"  {method.name:<22} {total_bits:>3} bits/block  {rows[-1]['bpp']:.4f} bpp  {rows[-1]['psnr']:6.2f} dB  "
              f"(train {train_seconds:.1f} s)", flush=True)
    rows += pillow_anchors(original, settings["jpeg"], "JPEG", settings["repeats"])
    rows += pillow_anchors(original, settings["webp"], "WEBP", settings["repeats"])
    baseline = photo.mean_colour_psnr(test, BLOCK)
    return rows, dict(mean_colour_psnr=baseline, training_blocks=len(train_blocks), pixels=pixels)


# --- the digits study: the same quantizers on whole 8x8 images, at bits per image ---

def digits_study(settings):
    import digits_autoencoder as digits

    train, test = digits.load()
    rows = []

    def measure(name, bits, fit, encode, decode):
        start = time.perf_counter()
        fit()
        train_seconds = time.perf_counter() - start
        with torch.no_grad():
            reconstruction = decode(encode(test)).clamp(0, 1)
        mse = (reconstruction - test).square().mean().item()
        rows.append(dict(study="digits", method=name, quality=None, bits_per_block=bits, bytes=None, bpp=None,
                         psnr=10 * math.log10(1 / mse), mse=mse, encode_ms=None, decode_ms=None, train_s=train_seconds))

    for b in settings["vq_bits"][:1]:
        method = KMeansVQ(b, settings["iters"])
        measure(method.name, b, lambda: method.fit(train), method.encode, method.decode)
    eight = [b for b in settings["digits_bits"] if b % 8 == 0]
    rvq, seconds = fit_rvq(train, max(eight) // 8, 256, settings["iters"])
    for b in eight:
        method = RVQStages(rvq, b // 8)
        measure(method.name, b, lambda: None, method.encode, method.decode)
        rows[-1]["train_s"] = seconds  # one fit for every prefix
    for b in settings["digits_bits"]:
        method = DirectBitcodes(b, settings["digits_epochs"])
        measure(method.name, b, lambda: method.fit(train), method.encode, method.decode)
    for b in settings["digits_bits"]:
        model = digits.make_model(b, bitcodes_pytorch=False, seed=0)

        def encode(images, model=model):
            model.eval()
            return model.quantizer(model.encoder(images).unsqueeze(1))[1]

        def decode(bits, model=model):
            return model.decoder(model.quantizer.from_bits(bits).squeeze(1))

        measure("Bitcodes AE", b, lambda model=model: digits.train(model, train, settings["digits_epochs"], desc="digits AE"),
                encode, decode)
    mean_mse = (train.mean(0) - test).square().mean().item()
    return rows, dict(mean_image_psnr=10 * math.log10(1 / mean_mse), test_images=len(test))


# --- tables, files ---

def interpolate(anchor_rows, bpp):
    """PSNR of an anchor at bpp, linear between the two qualities that bracket it, else None."""
    points = sorted((r["bpp"], r["psnr"]) for r in anchor_rows)
    for (b0, p0), (b1, p1) in zip(points, points[1:]):
        if b0 <= bpp <= b1:
            return p0 + (p1 - p0) * (bpp - b0) / (b1 - b0) if b1 > b0 else max(p0, p1)
    return None


PHOTO_COLUMNS = ["k-means VQ", "RVQ", "RVQ, no colour stage", "Bitcodes", "Bitcodes AE"]


def photo_table(rows, info):
    learned = [r for r in rows if r["bits_per_block"] is not None]
    anchors = {m: [r for r in rows if r["method"] == m] for m in ("JPEG", "WebP")}
    lines = ["| bits / 8×8 block | bpp (file) | " + " | ".join(PHOTO_COLUMNS) + " | JPEG | WebP |",
             "|---:|---:|" + "---:|" * (len(PHOTO_COLUMNS) + 2)]
    for bits in sorted({r["bits_per_block"] for r in learned}):
        at = {r["method"]: r for r in learned if r["bits_per_block"] == bits}
        bpp = max(r["bpp"] for r in at.values())
        best = max(r["psnr"] for r in at.values())
        cells = []
        for m in PHOTO_COLUMNS:
            if m not in at:
                cells.append("–")
            else:
                text = f"{at[m]['psnr']:.2f}"
                cells.append(f"**{text}**" if at[m]["psnr"] == best else text)
        for m in ("JPEG", "WebP"):
            value = interpolate(anchors[m], bpp)
            cells.append("–" if value is None else f"{value:.2f}")
        lines.append(f"| {bits} | {bpp:.3f} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"PSNR in dB on flower.jpg; each block's exact mean colour gives {info['mean_colour_psnr']:.2f} dB. "
                 "JPEG and WebP: interpolated at the row's bpp between the qualities that bracket it (– outside their range).")
    return "\n".join(lines)


def digits_table(rows, info):
    methods = ["k-means VQ", "RVQ", "Bitcodes", "Bitcodes AE"]
    lines = ["| bits / image | " + " | ".join(methods) + " |", "|---:|" + "---:|" * len(methods)]
    for bits in sorted({r["bits_per_block"] for r in rows}):
        at = {r["method"]: r for r in rows if r["bits_per_block"] == bits}
        best = max(r["psnr"] for r in at.values())
        cells = []
        for m in methods:
            if m not in at:
                cells.append("–")
            else:
                text = f"{at[m]['psnr']:.2f}"
                cells.append(f"**{text}**" if at[m]["psnr"] == best else text)
        lines.append(f"| {bits} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"PSNR in dB (peak 1) on {info['test_images']} held-out digits; predicting the mean image gives "
                 f"{info['mean_image_psnr']:.2f} dB.")
    return "\n".join(lines)


def plot(photo_rows, digits_rows, info, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    styles = {  # method: (line style, colour), the same in both panels
        "k-means VQ": ("s-", "C0"), "RVQ": ("o-", "C1"), "RVQ, no colour stage": ("o:", "C1"), "Bitcodes": ("^-", "C2"),
        "Bitcodes AE": ("v-", "C3"), "JPEG": ("--", "k"), "WebP": ("-.", "k"),
    }
    for method, (style, colour) in styles.items():
        points = sorted((r["bpp"], r["psnr"]) for r in photo_rows if r["method"] == method)
        if points:
            left.plot(*zip(*points), style, color=colour, label=method, markersize=4)
    left.axhline(info["photo"]["mean_colour_psnr"], color="grey", lw=0.8, label="exact mean colour per block")
    left.set(xlabel="bits per pixel (file size)", ylabel="PSNR (dB)", title="flower.jpg, learned on china.jpg (8×8 blocks)",
             xlim=(0, 0.8))
    shown = [r["psnr"] for r in photo_rows if r["bpp"] <= 0.8]
    left.set_ylim(min(shown) - 1, max(shown) + 6)  # room for the legend above the curves
    left.legend(fontsize=7, loc="upper left", ncol=2)
    for method, (style, colour) in styles.items():
        points = sorted((r["bits_per_block"], r["psnr"]) for r in digits_rows if r["method"] == method)
        if points:
            right.plot(*zip(*points), style, color=colour, label=method, markersize=4)
    right.axhline(info["digits"]["mean_image_psnr"], color="grey", lw=0.8, label="mean image")
    right.set(xlabel="bits per image", ylabel="PSNR (dB, peak 1)", title="digits (8×8), held out")
    right.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer blocks, epochs and rates (a few minutes less)")
    parser.add_argument("--fast", action="store_true", help="the smallest run, for the tests")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    parser.add_argument("--codes-dir", default=None, help="keep the .bcx files here (default: a temporary directory)")
    args, _ = parser.parse_known_args(argv)  # `make bench` passes the other benchmarks' flags too
    mode = "fast" if args.fast else "quick" if args.quick else "full"
    settings = SETTINGS[mode]
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as temporary:
        print(f"photo study ({mode})", flush=True)
        if args.codes_dir:
            os.makedirs(args.codes_dir, exist_ok=True)
        photo_rows, photo_info = photo_study(settings, args.codes_dir or temporary)
    print("digits study", flush=True)
    digits_rows, digits_info = digits_study(settings)
    seconds = time.perf_counter() - start

    date = datetime.date.today().isoformat()
    stem = os.path.join(args.out, f"rate-distortion-{date}" + ("" if mode == "full" else f"-{mode}"))
    os.makedirs(args.out, exist_ok=True)
    info = dict(photo=photo_info, digits=digits_info)
    meta = dict(date=date, mode=mode, settings=settings, threads=args.threads, torch=torch.__version__,
                machine=platform.machine(), cpu_capability=torch.backends.cpu.get_cpu_capability(), seconds=seconds, **info)
    rows = photo_rows + digits_rows
    with open(stem + ".json", "w") as f:
        json.dump(dict(meta=meta, results=rows), f, indent=1)
    fields = ["study", "method", "quality", "bits_per_block", "file", "bytes", "bpp", "psnr", "mse", "encode_ms", "decode_ms", "train_s"]
    with open(stem + ".csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    plot(photo_rows, digits_rows, info, stem + ".png")

    print()
    print(photo_table(photo_rows, photo_info))
    print()
    print(digits_table(digits_rows, digits_info))
    print(f"\n{seconds:.0f} s; wrote {stem}.{{json,csv,png}}")
    return dict(meta=meta, results=rows, paths=[stem + ext for ext in (".json", ".csv", ".png")])


if __name__ == "__main__":
    main(sys.argv[1:])
