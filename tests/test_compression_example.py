"""examples/compress_image.py and benchmarks/rate_distortion.py in their fast modes: they beat
predicting each block's mean colour, and the bits per pixel they report are those of the
files on disk."""

import json
import math
import os
import pathlib
import sys

import pytest
import torch

from bitcodes_ext import codec
from conftest import load_module

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEADER = 16


@pytest.fixture
def one_thread():
    """The scripts set torch's thread count; one thread keeps their many small steps quick on a
    busy machine, and the suite's own count comes back afterwards."""
    threads = torch.get_num_threads()
    yield ["--threads", "1"]
    torch.set_num_threads(threads)


def test_compress_image_example(native, tmp_path, one_thread):
    pytest.importorskip("sklearn")
    example = load_module(ROOT / "examples" / "compress_image.py", "compress_image")
    report = example.main(["--fast", "--codes-dir", str(tmp_path), "--out", str(tmp_path / "side_by_side.png"), *one_thread])
    pixels = 427 * 640
    blocks = math.ceil(427 / 8) * (640 // 8)
    assert report["pixels"] == pixels and len(report["rates"]) == 2
    for rate in report["rates"]:
        size = os.path.getsize(rate["path"])
        assert rate["bytes"] == size and rate["bpp"] == pytest.approx(8 * size / pixels, rel=1e-12)
        codes, meta = codec.load(rate["path"])
        assert codes.shape == (blocks, 1 + rate["stages"]) and int(codes.max()) < 256
        assert meta["height"] == 427 and meta["width"] == 640 and meta["stages"] == rate["stages"]
        meta_bytes = len(json.dumps(meta, separators=(",", ":")).encode())
        assert size == HEADER + 8 * 2 + meta_bytes + blocks * (1 + rate["stages"])  # 8 bits per code, nothing else
        assert rate["psnr"] > report["mean_colour_psnr"] + 0.3, rate
        assert rate["encode_ms"] > 0 and rate["decode_ms"] > 0
    assert report["rates"][1]["psnr"] > report["rates"][0]["psnr"] + 0.5  # another stage helps
    # Decoding reads the file and the learned model only: decoding again gives the reported PSNR.
    original = example.to_uint8(example.load_photos()["flower.jpg"])
    for rate in report["rates"]:
        assert example.psnr(report["coder"].decode(rate["path"]), original) == rate["psnr"]
    assert (tmp_path / "side_by_side.png").stat().st_size > 20_000


def test_rate_distortion_study(native, tmp_path, one_thread):
    pytest.importorskip("sklearn")
    pytest.importorskip("PIL")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    study = load_module(ROOT / "benchmarks" / "rate_distortion.py", "rate_distortion")
    result = study.main(["--fast", "--out", str(tmp_path / "results"), "--codes-dir", str(tmp_path / "codes"), *one_thread])
    json_path, csv_path, png_path = map(pathlib.Path, result["paths"])
    data = json.loads(json_path.read_text())
    rows, meta = data["results"], data["meta"]
    assert csv_path.read_text().count("\n") == len(rows) + 1 and png_path.stat().st_size > 20_000
    photo = [r for r in rows if r["study"] == "photo"]
    learned = [r for r in photo if r["bits_per_block"] is not None]
    assert {r["method"] for r in learned} == {"k-means VQ", "RVQ", "RVQ, no colour stage", "Bitcodes", "Bitcodes AE"}
    blocks, pixels = math.ceil(427 / 8) * 80, 427 * 640
    for r in learned:
        path = tmp_path / "codes" / r["file"]
        size = path.stat().st_size
        assert r["bytes"] == size and r["bpp"] == pytest.approx(8 * size / pixels, rel=1e-12)
        bits, file_meta = codec.load(path)
        assert bits.shape == (blocks, r["bits_per_block"])  # exactly the row's bits per block in the file
        assert sum(file_meta["widths"]) == r["bits_per_block"]
        meta_bytes = len(json.dumps(file_meta, separators=(",", ":")).encode())
        assert size == HEADER + 8 * 2 + meta_bytes + math.ceil(blocks * r["bits_per_block"] / 8)
    baseline = meta["photo"]["mean_colour_psnr"]
    rvq = {r["bits_per_block"]: r["psnr"] for r in learned if r["method"] == "RVQ"}
    assert rvq[24] > baseline + 1.0 and rvq[24] > rvq[16]
    raw = {r["bits_per_block"]: r["psnr"] for r in learned if r["method"] == "RVQ, no colour stage"}
    assert raw[24] < rvq[24]  # the colour stage is what carries the codebook to the other photo
    for fmt in ("JPEG", "WebP"):
        anchors = sorted((r["quality"], r["bpp"], r["psnr"]) for r in photo if r["method"] == fmt)
        assert len(anchors) >= 2 and all(a[1] < b[1] and a[2] < b[2] for a, b in zip(anchors, anchors[1:]))
    digits = [r for r in rows if r["study"] == "digits"]
    assert {r["method"] for r in digits} == {"k-means VQ", "RVQ", "Bitcodes", "Bitcodes AE"}
    assert all(r["psnr"] > meta["digits"]["mean_image_psnr"] for r in digits if r["method"] in ("RVQ", "k-means VQ"))
    table = study.photo_table(photo, meta["photo"])
    assert table.count("\n| ") == 2 and "| 16 | 0.25" in table  # one row per rate, from the results alone
