// The nanobind module mlx_gen_parity._core, split by concern. Each bind_* adds one area's classes
// and functions; module.cpp calls them and maps mlxgp::Error to Python exceptions.
#pragma once

#include <memory>
#include <string>

#include <nanobind/nanobind.h>

#include "mlxgp/loader.h"
#include "mlxgp/model.h"
#include "mlxgp/tokenizer.h"

namespace mlxgp::py {

namespace nb = nanobind;

// What Python holds for a loaded model: the model plus what load() read beside it.
struct PyModel {
  std::shared_ptr<Model> model;
  std::string generation_config_json;
  std::string source;
};

void bind_model(nb::module_& m);        // model.cpp: load, Model, Tokenizer, ModelConfig
void bind_generation(nb::module_& m);   // generation.cpp: config fields, generate
void bind_hooks(nb::module_& m);        // hooks.cpp: hook classes, steering-vector extraction
void bind_training(nb::module_& m);     // training.cpp: losses, AdamW, train_step, LoRA
void bind_convert(nb::module_& m);      // convert.cpp: HF folder -> MLX folder
void bind_distributed(nb::module_& m);  // distributed.cpp: distributed_init, shard_model
void bind_kernels(nb::module_& m);      // kernels.cpp: _ggml_matmul, a test hook

// blas_rebind.cpp: points libmlx.so's cblas_{s,d,c}gemm at the already loaded OpenBLAS at
// openblas_path, as the mlxgp executable's link order does. Returns the number of slots rewritten.
int rebind_mlx_blas(const char* openblas_path);
// The file of the library that libmlx's cblas_sgemm slot now points to ("" if libmlx is not loaded).
std::string mlx_sgemm_library();

}  // namespace mlxgp::py
