// Objects inside a request hold only the keys OpenAI defines there: any other is a 400 naming it, never
// silently ignored (a nested key a client believes is read, e.g. llama.cpp's response_format.schema).
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "mlxgp/server.h"

namespace mlxgp::server {

inline void refuse_unknown_keys(const nlohmann::ordered_json& object, std::initializer_list<std::string_view> known,
                                const std::string& where) {
  if (!object.is_object()) return;
  for (auto& [key, _] : object.items()) {
    bool ok = false;
    for (auto k : known) ok = ok || key == k;
    if (!ok) throw ApiError(400, where + ": unknown field '" + key + "'", where + "." + key);
  }
}

}  // namespace mlxgp::server
