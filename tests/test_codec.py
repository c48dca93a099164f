"""bitcodes_ext.codec: exact round trips at every width, the size bound, every kind of bad file
(truncated at each byte, foreign, unsupported version, wrong size, corrupted), bad arguments,
and atomic writes."""

import os
import struct

import pytest
import torch

from bitcodes_ext import codec, pack_bits, to_bits

WIDTHS = [1, 3, 8, 10, 13, 16, 31, 63]
HEADER = 16  # magic, version, width, ndim, meta length, CRC-32


def random_codes(shape, width, seed=0):
    generator = torch.Generator().manual_seed(seed)
    # randint's upper bound is exclusive and itself an int64, so draw 62 bits and add the top bit.
    if width <= 62:
        return torch.randint(0, 1 << width, shape, generator=generator, dtype=torch.int64)
    low = torch.randint(0, 1 << 62, shape, generator=generator, dtype=torch.int64)
    return low | (torch.randint(0, 2, shape, generator=generator, dtype=torch.int64) << 62)


def expected_size(shape, width, meta_json):
    numel = 1
    for n in shape:
        numel *= n
    return HEADER + 8 * len(shape) + len(meta_json) + -(-numel * width // 8)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("shape", [(1000,), (7, 13), (2, 3, 5), (0,), (4, 0, 3), ()])
def test_round_trip_is_exact_and_the_size_is_the_bound(tmp_path, width, shape):
    codes = random_codes(shape, width)
    if codes.numel():  # the extremes of the range survive too
        codes.view(-1)[0], codes.view(-1)[-1] = 0, (1 << width) - 1
    meta = {"image": "flower.jpg", "block": [8, 8], "stages": 3, "psnr": 27.5, "nested": {"ok": True, "none": None}}
    path = tmp_path / "codes.bcx"
    codec.save(path, codes, width, meta=meta)
    loaded, loaded_meta = codec.load(path)
    assert loaded.dtype == torch.int64 and loaded.shape == codes.shape
    assert torch.equal(loaded, codes)
    assert loaded_meta == meta
    meta_json = '{"image":"flower.jpg","block":[8,8],"stages":3,"psnr":27.5,"nested":{"ok":true,"none":null}}'
    assert path.stat().st_size == expected_size(shape, width, meta_json)


def test_payload_is_msb_first_and_matches_pack_bits(tmp_path):
    # Width 1 is a Bitcodes bits tensor: the payload is pack_bits of the bits, byte for byte.
    bits = torch.randint(0, 2, (5, 24))
    codec.save(tmp_path / "bits.bcx", bits, 1)
    payload = (tmp_path / "bits.bcx").read_bytes()[-15:]
    assert payload == pack_bits(bits.reshape(-1)).numpy().tobytes()
    # Width 10: code 0b1000000001 then 0b0000000011 -> 10000000 01000000 0011(0000)
    codec.save(tmp_path / "ten.bcx", torch.tensor([513, 3]), 10)
    assert (tmp_path / "ten.bcx").read_bytes()[-3:] == bytes([0b10000000, 0b01000000, 0b00110000])


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32])
def test_other_integer_dtypes_load_as_int64(tmp_path, dtype):
    codes = torch.tensor([[1, 0, 1], [0, 1, 1]]).to(dtype)
    codec.save(tmp_path / "c.bcx", codes, 1)
    loaded, meta = codec.load(tmp_path / "c.bcx")
    assert meta is None and loaded.dtype == torch.int64 and torch.equal(loaded, codes.long())


def test_non_contiguous_codes_and_string_paths(tmp_path):
    codes = torch.arange(60).reshape(6, 10).t()[::2]
    codec.save(str(tmp_path / "c.bcx"), codes, 6)
    assert torch.equal(codec.load(str(tmp_path / "c.bcx"))[0], codes)


def test_large_input_is_packed_in_chunks(tmp_path):
    # More codes than one packing chunk, with a width that does not divide 8.
    codes = random_codes((3 * codec._CHUNK + 5,), 13, seed=3)
    codec.save(tmp_path / "big.bcx", codes, 13)
    assert torch.equal(codec.load(tmp_path / "big.bcx")[0], codes)


def small_file(tmp_path):
    path = tmp_path / "small.bcx"
    codec.save(path, torch.tensor([[5, 0, 7], [1, 2, 3]]), 3, meta={"k": "v"})
    return path, path.read_bytes()


def test_every_truncation_raises_codec_error(tmp_path):
    path, data = small_file(tmp_path)
    assert len(data) == HEADER + 16 + 9 + 3
    for length in range(len(data)):
        path.write_bytes(data[:length])
        with pytest.raises(codec.CodecError, match="truncated") as error:
            codec.load(path)
        assert isinstance(error.value, ValueError)
    path.write_bytes(data)
    assert codec.load(path)[0].tolist() == [[5, 0, 7], [1, 2, 3]]


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n" + bytes(100), b"hello world, not codes", b"\x89BCY" + bytes(40), b"x"])
def test_foreign_files_raise_codec_error(tmp_path, content):
    path = tmp_path / "foreign.bcx"
    path.write_bytes(content)
    expected = "truncated" if content == b"" else "not a bitcodes codes file"
    with pytest.raises(codec.CodecError, match=expected):
        codec.load(path)


def test_a_torch_save_file_is_foreign(tmp_path):
    torch.save(torch.arange(10), tmp_path / "tensor.pt")
    with pytest.raises(codec.CodecError, match="not a bitcodes codes file"):
        codec.load(tmp_path / "tensor.pt")


@pytest.mark.parametrize("version", [0, 2, 65535])
def test_unsupported_version_raises_codec_error(tmp_path, version):
    path, data = small_file(tmp_path)
    path.write_bytes(data[:4] + struct.pack("<H", version) + data[6:])
    with pytest.raises(codec.CodecError, match=f"unsupported version {version}"):
        codec.load(path)


def test_size_disagreeing_with_the_header_raises_codec_error(tmp_path):
    path, data = small_file(tmp_path)
    path.write_bytes(data + b"\x00")  # one trailing byte
    with pytest.raises(codec.CodecError, match="size mismatch"):
        codec.load(path)
    # A header whose shape claims more codes than the payload holds.
    path.write_bytes(data[:HEADER] + struct.pack("<2Q", 3, 4) + data[HEADER + 16 :])
    with pytest.raises(codec.CodecError, match="truncated"):
        codec.load(path)
    # A header that claims 2**60 codes: rejected from the file size, without allocating them.
    path.write_bytes(data[:HEADER] + struct.pack("<2Q", 1 << 30, 1 << 30) + data[HEADER + 16 :])
    with pytest.raises(codec.CodecError, match="truncated"):
        codec.load(path)


@pytest.mark.parametrize("width", [0, 64, 255])
def test_corrupt_width_raises_codec_error(tmp_path, width):
    path, data = small_file(tmp_path)
    path.write_bytes(data[:6] + bytes([width]) + data[7:])
    with pytest.raises(codec.CodecError, match="bits_per_code"):
        codec.load(path)


def test_every_flipped_bit_is_caught(tmp_path):
    path, data = small_file(tmp_path)
    for offset in range(len(data)):  # header fields change the size, the rest fails the CRC
        for bit in range(8):
            corrupted = bytearray(data)
            corrupted[offset] ^= 1 << bit
            path.write_bytes(bytes(corrupted))
            with pytest.raises(codec.CodecError):
                codec.load(path)


def test_corrupt_meta_and_padding_raise_codec_error(tmp_path):
    import zlib

    def with_crc(body_after_crc: bytes, head: bytes) -> bytes:
        return head[:12] + struct.pack("<I", zlib.crc32(body_after_crc)) + body_after_crc

    path, data = small_file(tmp_path)
    meta_start = HEADER + 16
    bad_meta = data[HEADER:meta_start] + b'{"k":"v"!' + data[meta_start + 9 :]
    path.write_bytes(with_crc(bad_meta, data))
    with pytest.raises(codec.CodecError, match="corrupt meta"):
        codec.load(path)
    # 6 codes x 3 bits = 18 bits: the last byte's low 6 bits are padding and must be zero.
    bad_padding = bytearray(data[HEADER:])
    bad_padding[-1] |= 1
    path.write_bytes(with_crc(bytes(bad_padding), data))
    with pytest.raises(codec.CodecError, match="padding bits"):
        codec.load(path)


def test_codes_that_do_not_fit_are_a_value_error(tmp_path):
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 2\*\*3\) for bits_per_code=3, got values in \[0, 8\]"):
        codec.save(tmp_path / "c.bcx", torch.tensor([0, 8]), 3)
    with pytest.raises(ValueError, match=r"got values in \[-1, 2\]"):
        codec.save(tmp_path / "c.bcx", torch.tensor([-1, 2]), 63)
    with pytest.raises(ValueError, match="codes must lie in"):
        codec.save(tmp_path / "c.bcx", torch.tensor([2]), 1)
    assert not (tmp_path / "c.bcx").exists()


@pytest.mark.parametrize("width", [0, 64, 1.0, True, "8"])
def test_bad_width_is_a_value_error(tmp_path, width):
    with pytest.raises(ValueError, match=r"bits_per_code must be an integer in \[1, 63\]"):
        codec.save(tmp_path / "c.bcx", torch.tensor([1]), width)


def test_bad_codes_and_meta(tmp_path):
    with pytest.raises(TypeError, match="codes must be an integer tensor"):
        codec.save(tmp_path / "c.bcx", torch.tensor([1.0]), 8)
    with pytest.raises(TypeError, match="codes must be an integer tensor"):
        codec.save(tmp_path / "c.bcx", [1, 2], 8)
    with pytest.raises(TypeError, match="meta must be a dict or None"):
        codec.save(tmp_path / "c.bcx", torch.tensor([1]), 8, meta=[1, 2])
    with pytest.raises(ValueError, match="JSON-serialisable"):
        codec.save(tmp_path / "c.bcx", torch.tensor([1]), 8, meta={"x": torch.tensor(1)})
    with pytest.raises(ValueError, match="JSON-serialisable"):
        codec.save(tmp_path / "c.bcx", torch.tensor([1]), 8, meta={"x": float("nan")})
    with pytest.raises(ValueError, match="would not load back unchanged"):
        codec.save(tmp_path / "c.bcx", torch.tensor([1]), 8, meta={"shape": (1, 2)})
    with pytest.raises(ValueError, match="would not load back unchanged"):
        codec.save(tmp_path / "c.bcx", torch.tensor([1]), 8, meta={1: "a"})
    assert list(tmp_path.iterdir()) == []


class FailingWrites:
    """A file object that fails on its second write: a crash (or a full disk) mid-write."""

    def __init__(self, f):
        self.f, self.writes = f, 0

    def write(self, data):
        self.writes += 1
        if self.writes == 2:
            raise OSError(28, "No space left on device")
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "codes.bcx"
    old = torch.arange(100)
    codec.save(path, old, 7)
    before = path.read_bytes()
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, mode: FailingWrites(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="No space left"):
        codec.save(path, torch.arange(1000), 10)
    monkeypatch.undo()
    assert path.read_bytes() == before and torch.equal(codec.load(path)[0], old)
    assert [p.name for p in tmp_path.iterdir()] == ["codes.bcx"]


def test_a_failed_fsync_or_rename_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "codes.bcx"
    codec.save(path, torch.arange(10), 4)
    before = path.read_bytes()
    for name in ("fsync", "replace"):
        def fail(*args, **kwargs):
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(os, name, fail)
        with pytest.raises(OSError, match="Input/output error"):
            codec.save(path, torch.arange(5), 3)
        monkeypatch.undo()
        assert path.read_bytes() == before
        assert [p.name for p in tmp_path.iterdir()] == ["codes.bcx"]


def test_the_write_goes_through_a_temporary_in_the_same_directory(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        seen.append((src, dst, open(src, "rb").read()))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    path = tmp_path / "codes.bcx"
    codec.save(path, torch.arange(10), 4)
    ((src, dst, content),) = seen
    assert os.path.dirname(src) == str(tmp_path) and dst == str(path) and src != dst
    assert content == path.read_bytes()  # complete before the rename


def test_packing_matches_to_bits_for_every_width(tmp_path):
    # The payload is the concatenation of to_bits(code, width) for every code, padded with zeros.
    for width in WIDTHS:
        codes = random_codes((37,), width, seed=width)
        codec.save(tmp_path / "c.bcx", codes, width)
        data = (tmp_path / "c.bcx").read_bytes()
        bits = to_bits(codes, width).reshape(-1)
        bits = torch.cat([bits, bits.new_zeros(-bits.numel() % 8)])
        assert data[HEADER + 8 + len(b"null") :] == pack_bits(bits).numpy().tobytes()
