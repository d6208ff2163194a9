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

}  // namespace mlxgp
