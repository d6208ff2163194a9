// Which chat template a tokenizer carries and which one a conversation uses, as transformers:
// chat_template.jinja and additional_chat_templates/<name>.jinja take priority over tokenizer_config.json's
// chat_template (a string, or a list of {name, template}); get_chat_template picks among named ones.
#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mlxgp/error.h"
#include "mlxgp/paths.h"
#include "tokenizer/impl.h"
#include "tokenizer/load_common.h"

namespace mlxgp {

namespace {

std::string read_template(const std::filesystem::path& p) {
  reject_directory(p.string(), "tokenizer", "chat template");
  std::ifstream f(p, std::ios::binary);
  if (!f) fail("tokenizer", "cannot open chat template '" + p.string() + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void set_named(Tokenizer::Impl& impl, const std::vector<std::pair<std::string, std::string>>& named) {
  std::map<std::string, std::string> dict;  // a dict in transformers: a repeated name keeps its last template
  for (const auto& [name, source] : named) dict[name] = source;
  impl.chat_template = dict.count("default") ? dict["default"] : "";
  impl.named_chat_templates.assign(dict.begin(), dict.end());
}

}  // namespace

namespace tok {

void load_chat_templates(Tokenizer::Impl& impl, const std::filesystem::path& folder, const nlohmann::json& cfg) {
  namespace fs = std::filesystem;
  std::vector<std::pair<std::string, std::string>> files;
  if (fs::exists(folder / "chat_template.jinja"))
    files.emplace_back("default", read_template(folder / "chat_template.jinja"));
  std::error_code ec;
  if (fs::is_directory(folder / "additional_chat_templates", ec))
    for (const auto& e : fs::directory_iterator(folder / "additional_chat_templates"))
      if (e.path().extension() == ".jinja") files.emplace_back(e.path().stem().string(), read_template(e.path()));
  if (files.size() == 1 && files[0].first == "default") {
    impl.chat_template = std::move(files[0].second);
    return;
  }
  if (!files.empty()) return set_named(impl, files);
  if (!cfg.contains("chat_template") || cfg["chat_template"].is_null()) return;
  const auto& j = cfg["chat_template"];
  if (j.is_string()) {
    impl.chat_template = j.get<std::string>();
    return;
  }
  if (!j.is_array()) fail("tokenizer", "tokenizer_config.json chat_template must be a string or a list");
  std::vector<std::pair<std::string, std::string>> named;
  for (const auto& t : j) {
    if (!t.is_object() || !t.contains("name") || !t["name"].is_string() || !t.contains("template") ||
        !t["template"].is_string())
      fail("tokenizer", "tokenizer_config.json chat_template entries must be {\"name\": str, \"template\": str}");
    named.emplace_back(t["name"].get<std::string>(), t["template"].get<std::string>());
  }
  set_named(impl, named);
}

}  // namespace tok

const SpecialTokens& Tokenizer::special_tokens() const { return impl_->special_tokens; }

const std::vector<std::pair<std::string, std::string>>& Tokenizer::named_chat_templates() const {
  return impl_->named_chat_templates;
}

const std::string& Tokenizer::chat_template() const {
  const auto& named = impl_->named_chat_templates;
  if (!named.empty() && std::none_of(named.begin(), named.end(), [](const auto& t) { return t.first == "default"; })) {
    std::string names;
    for (const auto& [name, source] : named) names += (names.empty() ? "" : ", ") + name;
    fail("chat_template",
         "the tokenizer has several chat templates and none is named 'default'; name one (" + names + ")");
  }
  return impl_->chat_template;
}

std::string Tokenizer::select_chat_template(const std::string& name_or_source, bool with_tools) const {
  const auto& named = impl_->named_chat_templates;
  auto find = [&](const std::string& name) {
    return std::find_if(named.begin(), named.end(), [&](const auto& t) { return t.first == name; });
  };
  if (!name_or_source.empty()) {
    auto it = find(name_or_source);
    return it != named.end() ? it->second : name_or_source;
  }
  if (with_tools)
    if (auto it = find("tool_use"); it != named.end()) return it->second;
  return chat_template();
}

}  // namespace mlxgp
