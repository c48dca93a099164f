"""How many bits a certified low-precision logit pass would leave to recompute (NOTES.md).

Only the sign of each logit x.w matters, so an integer pass over quantised x and w could
settle every bit whose approximate logit lies outside its worst-case error, leaving the rest
to an exact float dot product. With per-token and per-bit absmax scales s_x, s_w and rounding
errors |e_x| <= s_x / 2, |e_w| <= s_w / 2 (elementwise):

    |x.w - x^.w^| = |x^.e_w + e_x.w| <= (s_w / 2) |x^|_1 + (s_x / 2) |w|_1

This prints the share of bits inside that bound on Gaussian data at the benchmark's shapes.
"""

import torch


def share_to_recompute(tokens, features, num_bits, qmax):
    x = torch.randn(tokens, features, dtype=torch.float64)
    codebook = torch.randn(2 * num_bits, features, dtype=torch.float64)
    w = codebook[1::2] - codebook[0::2]
    sx = x.abs().amax(1, keepdim=True) / qmax
    sw = w.abs().amax(1, keepdim=True) / qmax
    qx, qw = (x / sx).round(), (w / sw).round()
    approx = (qx @ qw.T) * sx * sw.T
    bound = (sw.T / 2) * (qx.abs().sum(1, keepdim=True) * sx) + (sx / 2) * w.abs().sum(1)[None, :]
    assert ((x @ w.T - approx).abs() <= bound * (1 + 1e-9)).all(), "the bound must hold"
    return (approx.abs() <= bound).double().mean().item()


def main():
    torch.manual_seed(0)
    for features, num_bits in [(512, 32), (1024, 64)]:
        for qmax, name in [(127, "int8"), (1023, "int16, 11 bits"), (2047, "int16, 12 bits")]:
            share = share_to_recompute(4096, features, num_bits, qmax)
            print(f"D={features:5d} B={num_bits:3d} {name:15s}: {100 * share:5.1f}% of bits to recompute")


if __name__ == "__main__":
    main()
