// `mlxgp convert`: HF checkpoint folder -> MLX folder (mlx-lm convert's layout), optionally quantized.
#include <iostream>

#include "args.h"
#include "commands.h"
#include "mlxgp/convert.h"
#include "mlxgp/error.h"
#include "mlxgp/loader.h"

namespace mlxgp::cli {

int run_convert(const std::vector<std::string>& argv) {
  Args args("convert",
            "Convert an HF checkpoint folder (config.json + safetensors) into an MLX folder: config.json\n"
            "(with \"quantization\" when quantized), model.safetensors and the tokenizer files, as mlx-lm's\n"
            "convert writes it. The result loads with mlxgp and with mlx_lm.load.");
  args.option("hf-path", "the HF checkpoint folder to read")
      .option("mlx-path", "the output folder (must not exist yet)")
      .option("quantize", "quantize the linear and embedding weights (mlx-lm's default: affine, 4 bits / group 64)",
              false)
      .option("q-mode",
              "affine | mxfp4 | mxfp8 | nvfp4: MLX's quantization mode (default affine; the others store\n"
              "e2m1 / e4m3 values with one uint8 scale per group: mxfp4 4 bits / 32, mxfp8 8 / 32, nvfp4 4 / 16)")
      .option("q-bits", "bits per quantized weight: 2, 3, 4, 6 or 8 (default: the mode's, 4 for affine)")
      .option("q-group-size", "quantization group size: 32, 64 or 128 (default: the mode's, 64 for affine)")
      .option("dtype", "float32 | bfloat16 | float16: cast the float weights first (default: the checkpoint's)");
  if (!args.parse(argv)) return 0;
  auto hf = args.get("hf-path"), out = args.get("mlx-path");
  if (!hf) fail("cli", "--hf-path is required");
  if (!out) fail("cli", "--mlx-path is required");
  ConvertOptions options;
  options.quantize = args.has("quantize");
  if ((args.has("q-bits") || args.has("q-group-size") || args.has("q-mode")) && !options.quantize)
    fail("cli", "--q-bits / --q-group-size / --q-mode need --quantize");
  if (auto m = args.get("q-mode")) options.mode = *m;
  if (auto b = args.get_int32("q-bits")) options.bits = *b;
  if (auto g = args.get_int32("q-group-size")) options.group_size = *g;
  if (auto d = args.get("dtype")) options.dtype = parse_dtype(*d);
  auto r = convert_to_mlx(*hf, *out, options);
  std::cerr << "[convert] wrote " << r.out_dir << ": " << r.tensors << " tensors (" << r.quantized_tensors
            << " weights quantized), copied " << r.copied_files.size() << " tokenizer/config files\n";
  return 0;
}

}  // namespace mlxgp::cli
