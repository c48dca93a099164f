"""examples/train_tokenizer.py in its quick form: every quantizer learns a tokenizer of the
held-out photos well beyond predicting the mean patch, with codes in range and in use."""

import importlib.util
import json
import pathlib

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The quick run reaches 16.4-17.5 dB on the held-out photos where the mean patch scores 11.6 dB,
# and uses 3.6-36% of the 4096 codes (a collapsed quantizer uses a handful).
MARGIN_DB = 3.0
USAGE_FLOOR = 0.01


def load_example():
    spec = importlib.util.spec_from_file_location("train_tokenizer", ROOT / "examples" / "train_tokenizer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    yield ["--threads", "1"]
    torch.set_num_threads(threads)


def test_every_quantizer_learns_a_tokenizer(native, tmp_path, one_thread):
    example = load_example()
    out = tmp_path / "tokenizer.json"
    report = example.main(["--quick", "--in-process", "--out", str(out), *one_thread])
    rows = {r["method"]: r for r in report["results"]}
    assert list(rows) == list(example.METHODS)
    baseline = report["meta"]["mean_patch_psnr_db"]
    for method, r in rows.items():
        assert r["psnr_db"] > baseline + MARGIN_DB, (method, r["psnr_db"], baseline)
        assert 0 <= r["code_min"] <= r["code_max"] < example.NUM_CODES, method
        assert r["fraction_used"] > USAGE_FLOOR, (method, r["fraction_used"])
        assert 1 <= r["perplexity"] <= r["fraction_used"] * example.NUM_CODES + 1e-6, method
        assert r["step_ms_median"] > 0 and r["peak_rss_growth_mib"] is None, method
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert out.with_suffix(".png").stat().st_size > 10_000


def test_a_method_in_its_own_process_reports_its_peak_memory(native, tmp_path, one_thread):
    example = load_example()
    report = example.main(["--quick", "--methods", "bsq", "--out", str(tmp_path / "bsq.json"), *one_thread])
    (row,) = report["results"]
    assert report["meta"]["isolated"] and row["method"] == "bsq"
    assert 0 < row["peak_rss_growth_mib"] < 2048
    assert row["psnr_db"] > report["meta"]["mean_patch_psnr_db"] + MARGIN_DB


def test_unknown_method_is_refused(tmp_path):
    example = load_example()
    with pytest.raises(SystemExit, match="unknown method 'vq'"):
        example.main(["--quick", "--methods", "vq", "--out", str(tmp_path / "x.json")])
