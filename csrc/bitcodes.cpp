// The op schemas, declared once; each backend registers its kernels in its own file
// (cpu/*.cpp under the CPU key, cuda/*.cu under the CUDA key).
#include <torch/library.h>

TORCH_LIBRARY(bitcodes_ext, m) {
  // Returns (y, bits, z): z = logit + bias + noise per bit, saved for the training backward
  // (empty in eval). Without `noise`, training draws it from torch's default generator.
  // bits_dtype: int64 (default), uint8 or bool.
  m.def(
      "forward(Tensor x, Tensor codebook, Tensor? noise, float temperature, bool training, "
      "bool euclidean, ScalarType bits_dtype=long) -> (Tensor, Tensor, Tensor)",
      {at::Tag::nondeterministic_seeded});
  // The straight-through Gumbel backward of a training forward: (grad_x, grad_codebook).
  m.def(
      "backward(Tensor grad_y, Tensor x, Tensor codebook, Tensor z, float temperature, "
      "bool euclidean) -> (Tensor, Tensor)");
  // y = sum_i c[2i + bits_i], and the gradient of that sum with respect to the codebook.
  m.def("decode(Tensor bits, Tensor codebook) -> Tensor");
  m.def("decode_backward(Tensor grad_y, Tensor bits, Tensor codebook) -> Tensor");
  // Nearest-code vector quantization: (codes int64, Euclidean distance), ties to the lowest index.
  m.def("vq(Tensor observations, Tensor codebook) -> (Tensor, Tensor)");
}
