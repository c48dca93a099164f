"""The installed wheel's smoke test, run by tests/test_wheel.py in a fresh venv, from a folder
outside the source tree, once per CPU capability (BITCODES_CPU_CAPABILITY set):

    python wheel_smoke.py SITE_PACKAGES CAPABILITY BUILT...

It checks that bitcodes_ext comes from SITE_PACKAGES with the capability asked for, then runs
a training step and an eval pass of Bitcodes, and vq, against the pure-torch reference.
"""

import os
import sys

import torch

import bitcodes_ext
from bitcodes_ext import Bitcodes, functional, reference, vq
from oracle import certify_bits, certify_codes, close_tol, tie_free_noise


def main(site_packages, capability, built):
    location = os.path.dirname(os.path.realpath(bitcodes_ext.__file__))
    assert location == os.path.join(os.path.realpath(site_packages), "bitcodes_ext"), location
    info = bitcodes_ext.backend_info()
    assert info["cpu_kernels"] and info["load_error"] is None, info
    assert info["cpu_capability"] == capability and info["cpu_capabilities_built"] == built, info

    torch.manual_seed(0)
    layer = Bitcodes(40, 13, temperature=0.7).train()
    x = torch.randn(3, 70, 40, requires_grad=True)
    noise = tie_free_noise(x.detach(), layer.codebook.detach(), dtype=torch.float32)
    grad_y = torch.randn(3, 70, 40)
    y, bits = layer(x, noise)
    dx, dc = torch.autograd.grad(y, (x, layer.codebook), grad_y)
    x64, c64 = x.detach().double().requires_grad_(), layer.codebook.detach().double().requires_grad_()
    y64, bits64 = reference.bitcodes(x64, c64, training=True, temperature=0.7, noise=noise.double())
    dx64, dc64 = torch.autograd.grad(y64, (x64, c64), grad_y.double())
    assert torch.equal(bits, bits64)  # the noise keeps every margin away from a tie
    tol = close_tol(torch.float32)
    torch.testing.assert_close(y.double(), y64, **tol)
    torch.testing.assert_close(dx.double(), dx64, rtol=tol["rtol"], atol=tol["atol"] * dx64.abs().max().item())
    torch.testing.assert_close(dc.double(), dc64, rtol=tol["rtol"], atol=tol["atol"] * dc64.abs().max().item())

    layer.eval()
    y, bits = layer(x.detach())
    certify_bits(bits, x.detach(), layer.codebook.detach(), accumulated_in=torch.float32)
    torch.testing.assert_close(y, functional.decode(bits, layer.codebook.detach(), backend="torch"), **tol)

    observations, codebook = torch.randn(500, 24), torch.randn(90, 24)
    codes, distances = vq(observations, codebook)
    certify_codes(codes, observations, codebook, rtol=2e-5)
    exact = (observations.double() - codebook.double()[codes]).norm(dim=1)
    torch.testing.assert_close(distances.double(), exact, **tol)
    print(f"wheel smoke test passed on {capability}: {location}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
