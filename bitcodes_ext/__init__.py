"""bitcodes_ext: vector quantization with binary codes, on fused C++/CUDA kernels."""

from . import _extension, codec, functional, memory, reference
from .bits import pack_bits, to_bits, to_decimal, unpack_bits
from .entropy import binary_entropy
from .info import backend_info
from .layers import Bitcodes
from .lookup_free import LookupFreeQuantizer
from .quantizer import CodebookUsage, VectorQuantizer, codebook_usage, kmeans
from .residual import ResidualVectorQuantizer
from .vq import vq

if _extension.LOAD_ERROR is None:
    from . import ops  # noqa: F401  (fake kernels and autograd of the compiled ops)

__all__ = [
    "Bitcodes",
    "CodebookUsage",
    "LookupFreeQuantizer",
    "ResidualVectorQuantizer",
    "VectorQuantizer",
    "backend_info",
    "binary_entropy",
    "codebook_usage",
    "codec",
    "functional",
    "kmeans",
    "memory",
    "pack_bits",
    "reference",
    "to_bits",
    "to_decimal",
    "unpack_bits",
    "vq",
]
__version__ = "0.1.0"
