"""Compress a photo to a file of codes: 8x8 pixel blocks, a colour stage and a
ResidualVectorQuantizer learned on one photo, applied to the other.

    python examples/compress_image.py [--block 8] [--stages 1 2 3] [--fast] [--codes-dir DIR]

Uses scikit-learn's two sample photos (shipped with it, no download): learns on china.jpg
(overlapping blocks), compresses the held-out flower.jpg. Each block is coded as

  - its mean colour's index in a fixed 256-colour palette (RGB 3-3-2 bits: 8 x 8 x 4 levels),
    8 bits; fixed rather than learned, because a palette learned on one photo lacks the other
    photo's colours;
  - the residual, block minus palette colour, by r stages of a ResidualVectorQuantizer of 256
    codes each (k-means initialised stage by stage), 8 bits per stage.

The codes go to a .bcx file (bitcodes_ext.codec, 8 bits per code). The encoder and the decoder
share the codebooks (a learned model, 256 x 192 floats per stage) and the palette; they are not
in the file. Reports bits per pixel from the file size on disk, PSNR (8-bit RGB), the encode
and decode times, and the PSNR of replacing each block by its exact mean colour (what the
learned stages have to beat), and writes a PNG of the original beside its reconstructions.
"""

import argparse
import math
import os
import sys
import tempfile
import time

import torch

from bitcodes_ext import ResidualVectorQuantizer, codec, vq

PALETTE_LEVELS = (8, 8, 4)  # RGB 3-3-2: 256 colours, 8 bits
CODES_PER_STAGE = 256  # 8 bits per stage, the same width as the palette index


def load_photos():
    """{"china.jpg": (3, H, W), "flower.jpg": (3, H, W)}, float32 in [0, 1]."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images()
    return {
        os.path.basename(name): torch.tensor(image).permute(2, 0, 1).float() / 255
        for name, image in zip(photos.filenames, photos.images)
    }


def training_blocks(image, block, stride):
    """Every block x block window at the given stride (overlapping when stride < block):
    (N, 3 * block * block), channel-major within a block."""
    windows = image.unfold(1, block, stride).unfold(2, block, stride)  # (3, rows, cols, block, block)
    return windows.permute(1, 2, 0, 3, 4).reshape(-1, 3 * block * block)


def image_blocks(image, block):
    """The image cut into whole blocks, its right and bottom edges repeated to fill the last."""
    _, height, width = image.shape
    padded = torch.nn.functional.pad(image[None], (0, -width % block, 0, -height % block), mode="replicate")[0]
    return training_blocks(padded, block, block)


def assemble(blocks, block, height, width):
    """The inverse of image_blocks: (N, 3 * block * block) -> (3, height, width)."""
    rows, cols = -(-height // block), -(-width // block)
    image = blocks.reshape(rows, cols, 3, block, block).permute(2, 0, 3, 1, 4).reshape(3, rows * block, cols * block)
    return image[:, :height, :width]


def to_uint8(image):
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def psnr(reconstruction, original):
    """PSNR in dB of two uint8 images (what a decoder shows, against the photo)."""
    mse = (reconstruction.double() - original.double()).square().mean().item()
    return 10 * math.log10(255**2 / mse) if mse > 0 else math.inf


def palette():
    """(256, 3): the centres of an 8 x 8 x 4 grid of the RGB cube."""
    return torch.cartesian_prod(*[(torch.arange(n) + 0.5) / n for n in PALETTE_LEVELS])


def flat_blocks(colours, block):
    """(N, 3) colours -> (N, 3 * block * block) blocks of that one colour."""
    return colours[:, :, None].expand(-1, 3, block * block).reshape(len(colours), -1)


def block_means(blocks, block):
    return blocks.reshape(len(blocks), 3, block * block).mean(2)


def mean_colour_psnr(image, block):
    """Each block replaced by its exact mean colour (not quantized): the baseline to beat."""
    blocks = image_blocks(image, block)
    flat = flat_blocks(block_means(blocks, block), block)
    return psnr(to_uint8(assemble(flat, block, *image.shape[1:])), to_uint8(image))


class BlockCoder:
    """The colour stage and the residual stages, with the file format around them."""

    def __init__(self, block=8, stages=3, seed=0):
        self.block, self.stages = block, stages
        self.palette = palette()
        torch.manual_seed(seed)
        self.rvq = ResidualVectorQuantizer(stages, CODES_PER_STAGE, 3 * block * block).eval()

    def colour_codes(self, blocks):
        codes, _ = vq(block_means(blocks, self.block), self.palette)
        return codes

    def residual(self, blocks, colour_codes):
        return blocks - flat_blocks(self.palette[colour_codes], self.block)

    def fit(self, blocks, iters=20):
        """k-means of the residuals, stage by stage."""
        self.rvq.init_kmeans(self.residual(blocks, self.colour_codes(blocks)), iters=iters)
        return self

    @torch.inference_mode()
    def encode(self, image, path, stages):
        """image (3, H, W) in [0, 1] -> path, with the first `stages` residual stages."""
        blocks = image_blocks(image, self.block)
        colour = self.colour_codes(blocks)
        codes = self.rvq.encode(self.residual(blocks, colour), num_stages=stages)
        meta = {"format": "bitcodes-image", "height": image.shape[1], "width": image.shape[2], "block": self.block,
                "palette": "rgb332", "stages": stages}
        codec.save(path, torch.cat([colour[:, None], codes], dim=1), 8, meta=meta)

    @torch.inference_mode()
    def decode(self, path):
        """path -> uint8 image (3, H, W)."""
        codes, meta = codec.load(path)
        if not isinstance(meta, dict) or meta.get("format") != "bitcodes-image" or meta.get("block") != self.block:
            raise ValueError(f"{path}: not an image coded with {self.block}x{self.block} blocks")
        blocks = flat_blocks(self.palette[codes[:, 0]], self.block)
        if codes.shape[1] > 1:
            blocks = blocks + self.rvq.from_codes(codes[:, 1:])
        return to_uint8(assemble(blocks, self.block, meta["height"], meta["width"]))


def timed(function, *args, repeats=3):
    """(result, median seconds over repeats)."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args)
        times.append(time.perf_counter() - start)
    return result, sorted(times)[len(times) // 2]


def save_comparison(original, panels, path, crop=(150, 260, 128)):
    """original and (image, label) panels side by side, with a 3x zoom of one region below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = [(original, "original (flower.jpg)")] + panels
    top, left, size = crop
    fig, axes = plt.subplots(2, len(images), figsize=(3.4 * len(images), 4.6), gridspec_kw={"height_ratios": [427, 360]})
    for column, (image, label) in enumerate(images):
        array = image.permute(1, 2, 0).numpy()
        axes[0, column].imshow(array)
        axes[0, column].set_title(label, fontsize=9)
        axes[1, column].imshow(array[top : top + size, left : left + size], interpolation="nearest")
        for row in (0, 1):
            axes[row, column].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--block", type=int, default=8, help="block side in pixels (4 or 8)")
    parser.add_argument("--stages", type=int, nargs="+", default=[1, 2, 3], help="residual stages at each rate")
    parser.add_argument("--stride", type=int, default=2, help="stride of the overlapping training blocks")
    parser.add_argument("--iters", type=int, default=20, help="Lloyd iterations per stage")
    parser.add_argument("--fast", action="store_true", help="fewer training blocks and iterations, two rates (the tests)")
    parser.add_argument("--codes-dir", default=None, help="where the .bcx files go (default: a temporary directory)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "compress_image.png"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.fast:
        args.stages, args.stride, args.iters = [1, 2], 4, 5
    torch.set_num_threads(args.threads)

    photos = load_photos()
    train, test = photos["china.jpg"], photos["flower.jpg"]
    height, width = test.shape[1:]
    blocks = training_blocks(train, args.block, args.stride)
    start = time.perf_counter()
    coder = BlockCoder(args.block, max(args.stages)).fit(blocks, iters=args.iters)
    train_seconds = time.perf_counter() - start

    codes_dir = args.codes_dir or tempfile.mkdtemp(prefix="compress_image-")
    original = to_uint8(test)
    rates, panels = [], []
    for stages in args.stages:
        path = os.path.join(codes_dir, f"flower-{args.block}x{args.block}-{stages}stages.bcx")
        _, encode_seconds = timed(coder.encode, test, path, stages)
        decoded, decode_seconds = timed(coder.decode, path)
        size = os.path.getsize(path)
        rate = dict(
            stages=stages, bits_per_block=8 * (1 + stages), path=path, bytes=size, bpp=8 * size / (height * width),
            psnr=psnr(decoded, original), encode_ms=1e3 * encode_seconds, decode_ms=1e3 * decode_seconds,
        )
        rates.append(rate)
        panels.append((decoded, f"{rate['bpp']:.3f} bpp, {rate['psnr']:.2f} dB"))
    save_comparison(original, panels, args.out)

    report = dict(
        train="china.jpg", test="flower.jpg", block=args.block, training_blocks=len(blocks), train_seconds=train_seconds,
        pixels=height * width, mean_colour_psnr=mean_colour_psnr(test, args.block), rates=rates,
        codebook_bytes=4 * coder.rvq.codebooks.numel(), out=args.out, coder=coder,
    )
    print(f"learned {max(args.stages)} stages of {CODES_PER_STAGE} codes on {len(blocks)} overlapping "
          f"{args.block}x{args.block} blocks of china.jpg in {train_seconds:.1f} s; compressing flower.jpg ({width}x{height})")
    print(f"{'stages':>6} {'bits/block':>10} {'bytes':>7} {'bpp':>6} {'PSNR dB':>8} {'encode ms':>9} {'decode ms':>9}")
    for r in rates:
        print(f"{r['stages']:>6} {r['bits_per_block']:>10} {r['bytes']:>7} {r['bpp']:>6.3f} {r['psnr']:>8.2f} "
              f"{r['encode_ms']:>9.1f} {r['decode_ms']:>9.1f}")
    print(f"each block's exact mean colour: {report['mean_colour_psnr']:.2f} dB; codebooks (not in the files): "
          f"{report['codebook_bytes'] / 1024:.0f} KiB")
    print(f"codes in {codes_dir}; wrote {os.path.relpath(args.out)}")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
