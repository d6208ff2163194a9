// Training checkpoints: a directory per step, written under a temporary name and renamed into place,
// then a `latest` pointer replaced atomically, so a run killed mid-save leaves the last good
// checkpoint intact and `latest` always names a complete one.
#pragma once

#include <optional>
#include <string>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "mlxgp/model.h"

namespace mlxgp {

struct Checkpoint {
  std::string path;  // the checkpoint directory
  int step = 0;
  nlohmann::json meta;                               // meta.json
  std::unordered_map<std::string, WeightMap> files;  // <name>.safetensors -> tensors
};

// Writes `out_dir/checkpoint-<step>/` with one safetensors file per entry of `files` and meta.json
// (step added), points `out_dir/latest` at it, and removes older checkpoints beyond `keep`.
// Throws [checkpoint] on failure; an earlier checkpoint is never touched before the new one is complete.
std::string save_checkpoint(const std::string& out_dir, int step,
                            const std::unordered_map<std::string, WeightMap>& files, const nlohmann::json& meta,
                            int keep = 2);

// Removes what interrupted saves leave in `out_dir`: `.tmp-checkpoint-*` folders, `*.tmp.safetensors`
// files and `latest.tmp` (never a complete checkpoint or `latest`). Returns how many
// entries were removed. Call it before a run writes into `out_dir` (one writer per folder).
int remove_stale_checkpoint_temps(const std::string& out_dir);

// The checkpoint `latest` names in `dir` (or `dir` itself when it is a checkpoint). Throws [checkpoint]
// when there is none or a file is corrupt.
Checkpoint load_checkpoint(const std::string& dir);

// The base model by content, as a resumed run compares it: its structure (model_fingerprint: config, every
// tensor's name, dtype and shape) and every weight's bytes (model_weights_hash, as the distributed start-up
// check compares them). The same weights under another path spelling give the same digest; other weights
// at the same path do not. Take it before adapters or a soft prompt are added.
std::string model_content_digest(Model& model);

// Throws [train] unless the checkpoint's meta "identity" holds exactly the keys and values of `identity`
// (what a run must share with the checkpoint it resumes: "model" from model_content_digest, the dtype,
// training mode, optimizer, adapter settings). The model is checked first and named in its own message.
void check_resume_identity(const Checkpoint& ck, const nlohmann::json& identity);

}  // namespace mlxgp
