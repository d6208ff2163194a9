// convert_to_mlx(): load an HF folder with our loader (so the weights are validated and named as the
// model uses them), optionally quantize, and write the folder mlx-lm's convert writes.
#include "mlxgp/convert.h"

#include "mlxgp/checkpoint_names.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <tuple>
#include <vector>
#include <sstream>

#include <mlx/mlx.h>
#include <nlohmann/json.hpp>

#include "core/fault.h"
#include "io/checkpoint_files.h"
#include "mlxgp/error.h"
#include "mlxgp/paths.h"
#include "mlxgp/loader.h"
#include "mlxgp/model_config.h"
#include "models/model_names.h"

namespace mlxgp {

namespace fs = std::filesystem;
namespace mx = mlx::core;

namespace {

// Files next to the weights that a loader of the converted folder reads (mlx-lm copies the tokenizer
// files through save_pretrained and keeps generation_config.json).
const char* const kCopied[] = {"tokenizer.json",
                               "tokenizer_config.json",
                               "special_tokens_map.json",
                               "tokenizer.model",
                               "vocab.json",
                               "merges.txt",
                               "added_tokens.json",
                               "chat_template.jinja",
                               "chat_template.json",
                               "generation_config.json"};

std::string read_file(const fs::path& p) {
  reject_directory(p.string(), "convert");
  std::ifstream in(p, std::ios::binary);
  if (!in) fail("convert", "cannot read " + p.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// mlx-lm quantizes every Linear, Embedding and SwitchLinear whose input size is a multiple of the group
// size (quantize_model's wrapped_predicate); in these decoders those are exactly the 2-D ".weight" tensors
// and the 3-D stacked experts (switch_mlp.*_proj.weight, [experts, out, in]).
bool quantizable(const std::string& name, const mx::array& w, int group_size) {
  return name.ends_with(".weight") && (w.ndim() == 2 || w.ndim() == 3) && w.shape(-1) % group_size == 0 &&
         mx::issubdtype(w.dtype(), mx::floating);
}

// The model classes' quant_predicate in mlx-lm 0.32 (models/qwen3_moe.py, granite.py, granitemoe.py, gpt_oss.py,
// gemma4_text.py, lfm2_moe.py, qwen3_next.py, qwen3_5.py): the modules
// (mlx-lm paths, the checkpoint names without ".weight") quantized with their own group size and bits,
// which quantize_model records per module in the config's "quantization".
std::optional<std::pair<int, int>> mlx_lm_override(const std::string& model_type, const std::string& path) {
  if (model_type == "qwen3_moe" && path.ends_with("mlp.gate")) return std::pair{64, 8};
  if (model_type == "gpt_oss" && path.ends_with("mlp.router")) return std::pair{64, 8};
  if ((model_type == "granite" || model_type == "granitemoe") &&
      (path.ends_with("self_attn.o_proj") || path.ends_with("mlp.down_proj") || path == "lm_head"))
    return std::pair{64, 8};
  if (model_type == "granitemoe" && path.ends_with("block_sparse_moe.router.layer")) return std::pair{64, 8};
  if (model_type == "gemma4_text" && path.ends_with(".router.proj")) return std::pair{64, 8};
  if (model_type == "lfm2_moe" && path.ends_with("feed_forward.gate")) return std::pair{64, 8};
  if ((model_type == "qwen3_next" || model_type == "qwen3_5_moe_text") &&
      (path.ends_with("mlp.gate") || path.ends_with("shared_expert_gate")))
    return std::pair{64, 8};
  return std::nullopt;
}

}  // namespace

ConvertResult convert_to_mlx(const std::string& hf_dir, const std::string& out_dir, const ConvertOptions& options) {
  // mlx-lm's defaults_for_mode, and the pairs mx.quantize takes (a microscaling mode has exactly one).
  const auto defaults = quantization_mode_defaults(options.mode);
  if (!defaults)
    fail("convert", "unknown quantization mode '" + options.mode + "' (supported: affine, mxfp4, mxfp8, nvfp4)");
  const std::pair<int, int> mode_default = *defaults;
  const int q_group = options.group_size.value_or(mode_default.first),
            q_bits = options.bits.value_or(mode_default.second);
  if (options.mode == "affine" && q_bits != 2 && q_bits != 3 && q_bits != 4 && q_bits != 6 && q_bits != 8)
    fail("convert", "bits must be 2, 3, 4, 6 or 8, got " + std::to_string(q_bits));
  if (options.mode == "affine" && q_group != 32 && q_group != 64 && q_group != 128)
    fail("convert", "group_size must be 32, 64 or 128, got " + std::to_string(q_group));
  if (options.mode != "affine" && std::pair{q_group, q_bits} != mode_default)
    fail("convert", "mode " + options.mode + " quantizes " + std::to_string(mode_default.second) +
                        " bits in groups of " + std::to_string(mode_default.first) + ", got " + std::to_string(q_bits) +
                        " bits in groups of " + std::to_string(q_group));
  if (!options.quantize && (options.mode != "affine" || options.group_size || options.bits))
    fail("convert", "a quantization mode, group size or bits needs quantize");
  fs::path src(hf_dir), dst = fs::path(out_dir).lexically_normal();
  if (out_dir.empty()) fail("convert", "the output folder name is empty");
  if (dst.filename().empty()) dst = dst.parent_path();  // "out/" names the folder out
  if (dst.empty() || dst.filename() == "." || dst.filename() == "..")
    fail("convert", "the output must name a new folder, got '" + out_dir + "'");
  if (!fs::exists(src)) fail("load", "no such file or folder: " + hf_dir);
  if (!fs::is_directory(src)) fail("convert", hf_dir + " is not a folder (convert reads HF checkpoint folders)");
  if (!fs::exists(src / "config.json")) fail("convert", "folder " + hf_dir + " has no config.json");
  if (fs::exists(dst) && !(fs::is_directory(dst) && fs::is_empty(dst)))
    fail("convert", "output " + out_dir + " already exists (choose a new folder)");

  auto config = nlohmann::ordered_json::parse(read_file(src / "config.json"), nullptr, false);
  if (config.is_discarded() || !config.is_object())
    fail("convert", "config.json in " + hf_dir + " is not a JSON object");
  if (options.quantize && config.contains("quantization")) fail("convert", hf_dir + " is already quantized");
  // gpt-oss's original checkpoint: mlx-lm's load_model reads quantization_config {"quant_method": "mxfp4"} as
  // "quantization" {32, 4, mxfp4} (its experts stay mxfp4), so its convert writes that, and quantize_model then
  // records every module it quantizes besides (its fine-grained config).
  std::optional<nlohmann::ordered_json> source_q;
  if (auto qc = config.find("quantization_config"); !config.contains("quantization") && qc != config.end() &&
                                                    qc->is_object() && qc->value("quant_method", "") == "mxfp4")
    source_q = nlohmann::ordered_json{{"group_size", 32}, {"bits", 4}, {"mode", "mxfp4"}};

  LoadOptions lo;
  lo.dtype = options.dtype;
  LoadedModel loaded = load(hf_dir, lo);

  ConvertResult result;
  result.out_dir = out_dir;
  const std::string& model_type = loaded.model->config().model_type;
  std::unordered_map<std::string, mx::array> params;
  for (auto& [name, w] : loaded.model->parameters()) params.insert_or_assign(name, w);
  // Named as mlx-lm names them first: its per-module quantization entries are keyed by those paths.
  params = to_checkpoint_names(loaded.model->config(), std::move(params), CheckpointLayout::MlxLm);
  // mlx-lm's quantize_model: {"group_size", "bits", "mode"}, then one entry per module its predicate gave
  // parameters of its own.
  const nlohmann::ordered_json quant_params = {{"group_size", q_group}, {"bits", q_bits}, {"mode", options.mode}};
  nlohmann::ordered_json q = source_q ? *source_q : quant_params;
  std::unordered_map<std::string, mx::array> out;
  std::map<std::string, std::pair<int, int>> own;  // modules with parameters of their own, in name order
  std::vector<std::string> fine;                   // the others quantized, recorded too under a source_q
  for (auto& [name, w] : params) {
    // (mlx-lm's deepseek_v2 MoEGate holds its weight as a plain parameter, which quantize_model skips.)
    const bool plain_router = model_type == "deepseek_v2" && name.ends_with(".mlp.gate.weight");
    if (!options.quantize || plain_router || is_fp32_router_tensor(params, name) || !quantizable(name, w, q_group)) {
      out.insert_or_assign(name, w);
      continue;
    }
    const std::string base = name.substr(0, name.size() - 7);
    int group_size = q_group, bits = q_bits;
    std::string mode = options.mode;
    if (auto o = mlx_lm_override(model_type, base)) {  // the predicate's dict: to_quantized's default mode, affine
      std::tie(group_size, bits) = *o;
      mode = "affine";
      own.emplace(base, *o);
      if (w.shape(-1) % group_size != 0)
        fail("convert", "tensor '" + name + "' (input size " + std::to_string(w.shape(-1)) +
                            ") does not split into mlx-lm's groups of " + std::to_string(group_size) + " for it");
    } else fine.push_back(base);
    auto qt = mx::quantize(w, group_size, bits, mode);
    out.insert_or_assign(name, qt[0]);
    out.insert_or_assign(base + ".scales", qt[1]);
    if (qt.size() > 2) out.insert_or_assign(base + ".biases", qt[2]);  // affine only
    ++result.quantized_tensors;
  }
  for (auto& [path, gb] : own) q[path] = {{"group_size", gb.first}, {"bits", gb.second}};
  if (source_q)
    for (auto& path : fine) q[path] = quant_params;
  result.tensors = static_cast<int>(out.size());
  if (options.quantize) {
    config["quantization"] = q;
    config["quantization_config"] = q;  // mlx-lm writes both keys
  } else if (std::none_of(out.begin(), out.end(), [](auto& kv) { return kv.first.ends_with(".scales"); })) {
    // Dense weights out of a quantized folder (a dtype dequantizes at load): the quantization block no longer
    // describes them, so it goes, as mlx-lm's convert --dequantize pops both keys.
    config.erase("quantization");
    config.erase("quantization_config");
  } else if (source_q) {
    config["quantization"] = q;
    config["quantization_config"] = q;
  }
  if (options.dtype) {
    const auto d = *options.dtype;
    config["torch_dtype"] = d == mx::float32 ? "float32" : d == mx::bfloat16 ? "bfloat16" : "float16";
  }

  // Written into a temporary folder beside the output and renamed into place, so a failed conversion
  // leaves no half-written model under the requested name.
  // Its name is made unique (mkdtemp) so that nothing of the user's is ever removed in its place.
  std::error_code ec;
  const fs::path parent = dst.has_parent_path() ? dst.parent_path() : fs::path(".");
  fs::create_directories(parent, ec);
  // A conversion killed before its rename left one of ours (".<name>.part-" and mkdtemp's six characters).
  const std::string stem = "." + dst.filename().string() + ".part-";
  for (const auto& e : fs::directory_iterator(parent, ec))
    if (const auto n = e.path().filename().string(); n.size() == stem.size() + 6 && n.starts_with(stem))
      fs::remove_all(e.path(), ec);
  std::string pattern = (parent / (stem + "XXXXXX")).string();
  if (!::mkdtemp(pattern.data()))
    fail("convert", "cannot create a folder beside " + dst.string() + ": " + std::strerror(errno));
  const fs::path tmp = pattern;
  // mkdtemp makes it private (0700); the model folder gets a folder's usual rights.
  fs::permissions(tmp,
                  fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec | fs::perms::others_read |
                      fs::perms::others_exec,
                  ec);
  try {
    const auto weights = (tmp / "model.safetensors").string();
    try {
      mx::save_safetensors(weights, out, {{"format", "mlx"}});
    } catch (const std::exception& e) {
      fail("convert", "cannot write " + weights + ": " + e.what());
    }
    try {
      io::validate_safetensors(weights);  // MLX's writer may not report every short write (disk full)
    } catch (const Error&) {
      fail("convert", "cannot write " + weights + ": the file came out short (disk full?)");
    }
    {
      std::ofstream cf(tmp / "config.json");
      cf << config.dump(4) << "\n";
      cf.flush();
      if (!cf) fail("convert", "cannot write " + (tmp / "config.json").string());
    }
    for (const char* f : kCopied)
      if (fs::exists(src / f)) {
        fs::copy_file(src / f, tmp / f, fs::copy_options::overwrite_existing);
        result.copied_files.push_back(f);
      }
    fault_point("convert-written");
    if (fs::exists(dst)) fs::remove(dst);  // empty folder (checked above)
    fs::rename(tmp, dst);
  } catch (const fs::filesystem_error& e) {
    fs::remove_all(tmp, ec);
    fail("convert", std::string("cannot write ") + dst.string() + ": " + e.what());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  return result;
}

}  // namespace mlxgp
