#include "tokenizer/load_common.h"

#include <nlohmann/json.hpp>

#include "mlxgp/error.h"
#include "tokenizer/utf8.h"

namespace mlxgp::tok {

bool flag(const nlohmann::json& j, const char* key, bool def, const char* where) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_boolean()) fail("tokenizer", std::string(where) + " field '" + key + "' must be a boolean");
  return j[key].get<bool>();
}

std::pair<std::string, std::string> split_merge(const std::string& merge) {
  size_t sp = merge.find(' ');
  if (sp == std::string::npos || merge.find(' ', sp + 1) != std::string::npos)
    fail("tokenizer", "BPE merge '" + merge + "' must be two tokens separated by one space");
  return {merge.substr(0, sp), merge.substr(sp + 1)};
}

void check_token_utf8(const std::string& token, const char* where) {
  if (auto bad = first_invalid_utf8(token))
    fail("tokenizer",
         std::string(where) + " has a token that is not valid UTF-8 (byte offset " + std::to_string(*bad) + ")");
}

Tokenizer::Impl::Template bos_eos_template(bool add_bos, std::optional<int> bos, bool add_eos, std::optional<int> eos) {
  Tokenizer::Impl::Template t;
  // transformers turns a flag off when its token is unset.
  if (add_bos && bos) t.prefix.push_back(*bos);
  if (add_eos && eos) t.suffix.push_back(*eos);
  return t;
}

}  // namespace mlxgp::tok
