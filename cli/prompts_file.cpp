#include "prompts_file.h"

#include <filesystem>
#include <cstdint>
#include <fstream>

#include <nlohmann/json.hpp>

#include "mlxgp/error.h"
#include "mlxgp/paths.h"

namespace mlxgp::cli {

std::vector<FileRequest> read_prompts_file(
    const std::string& path, const GenerationConfig& base,
    const std::function<std::vector<int>(const std::string&)>& encode,
    const std::function<void(const std::vector<int>&, const GenerationConfig&)>& check) {
  reject_directory(path, "generate", "--prompts-file");
  std::ifstream in(path);
  if (!in) fail("generate", "cannot read --prompts-file '" + path + "'");
  const std::string name = std::filesystem::path(path).filename().string();
  std::vector<FileRequest> out;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto bad = [&](const std::string& why) { fail("generate", name + ":" + std::to_string(number) + ": " + why); };
    nlohmann::ordered_json j;  // in the line's key order: a json_schema lists its properties in order
    try {
      j = nlohmann::ordered_json::parse(line);
    } catch (const nlohmann::ordered_json::exception& e) {
      bad(std::string(e.what()).find("UTF-8") != std::string::npos ? "not valid UTF-8" : "malformed JSON");
    }
    if (!j.is_object()) bad("not a JSON object");
    for (auto& [key, _] : j.items())
      if (key != "prompt" && key != "input_ids" && key != "config")
        bad("unknown key '" + key + "' (expected prompt or input_ids, and config)");
    if (j.contains("prompt") == j.contains("input_ids")) bad("give exactly one of \"prompt\" and \"input_ids\"");
    FileRequest r;
    r.config = base;
    r.where = name + ":" + std::to_string(number);
    try {
      if (j.contains("prompt")) {
        if (!j["prompt"].is_string()) bad("\"prompt\" must be a string");
        r.prompt_ids = encode(j["prompt"].get<std::string>());
      } else {
        if (!j["input_ids"].is_array()) bad("\"input_ids\" must be a list of token ids");
        for (auto& v : j["input_ids"]) {
          if (!v.is_number_integer()) bad("\"input_ids\" must be a list of token ids");
          const long long id = v.get<long long>();
          if (id < 0 || id > INT32_MAX) bad("token id " + v.dump() + " is outside the vocabulary");
          r.prompt_ids.push_back(static_cast<int>(id));
        }
      }
      if (j.contains("config")) {
        if (!j["config"].is_object()) bad("\"config\" must be an object of GenerationConfig fields");
        apply_generation_config_json(r.config, j["config"].dump(), ConfigSource::User);
      }
      validate(r.config);
      if (r.prompt_ids.empty()) bad("the prompt is empty");
      check(r.prompt_ids, r.config);
    } catch (const Error& e) {
      const std::string what = e.what();
      if (what.rfind("[generate] " + name + ":", 0) == 0) throw;
      bad(without_component(what));
    }
    out.push_back(std::move(r));
  }
  if (out.empty()) fail("generate", name + ": no requests in the file");
  return out;
}

}  // namespace mlxgp::cli
