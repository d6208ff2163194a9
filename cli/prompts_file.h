// `mlxgp generate --prompts-file requests.jsonl`: one request per line, {"prompt": "..."} or
// {"input_ids": [...]}, with an optional "config" object of HF GenerationConfig fields that overrides
// the command line for that request. Blank lines are skipped.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "mlxgp/generation_config.h"

namespace mlxgp::cli {

struct FileRequest {
  std::vector<int> prompt_ids;
  GenerationConfig config;  // the command line's config with the line's "config" applied, validated
  std::string where;        // "requests.jsonl:LINE", for the messages of later checks
};

// `encode(text)` turns a "prompt" into ids (it throws when the model has no tokenizer); `check(ids,
// config)` throws on a prompt the model cannot take. Every problem is one [generate] error naming the
// file and line ("requests.jsonl:3: ...").
std::vector<FileRequest> read_prompts_file(
    const std::string& path, const GenerationConfig& base,
    const std::function<std::vector<int>(const std::string&)>& encode,
    const std::function<void(const std::vector<int>&, const GenerationConfig&)>& check);

}  // namespace mlxgp::cli
