#include "load_flags.h"

namespace mlxgp::cli {

void declare_int8_flag(Args& args) {
  args.option(
      "int8-activations",
      "GGUF Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 / IQ4_NL / Q4_K / Q5_K / Q6_K / IQ4_XS weights: quantize activations "
      "to 8 bits per 32 (256) values and multiply with integer dot products, as llama.cpp's CPU backend does (AVX-512 "
      "VNNI CPUs; faster than float32 activations "
      "at every batch size; those weights are held twice, as stored and interleaved for these kernels; "
      "logits then follow llama.cpp's rounding, not transformers'; Q2_K / Q3_K / MXFP4 tensors keep float32 "
      "activations). Applies to --model; a --draft-model "
      "loads as usual, as with --dtype",
      false);
}

LoadOptions load_options_from(const Args& args) {
  LoadOptions o;
  if (auto d = args.get("dtype")) o.dtype = parse_dtype(*d);
  o.int8_activations = args.has("int8-activations");
  return o;
}

}  // namespace mlxgp::cli
