// io::recurrent_layer_flags: layer_types.h.
#include "io/layer_types.h"

#include "mlxgp/error.h"

namespace mlxgp::io {

std::vector<bool> recurrent_layer_flags(const nlohmann::json& types, int layers, const std::string& model_type,
                                        const std::string& recurrent) {
  if (!types.is_array() || static_cast<int>(types.size()) != layers)
    fail("config", "layer_types must list one entry per layer");
  std::vector<bool> flags(layers, false);
  for (int i = 0; i < layers; ++i) {
    const auto& t = types[i];
    // (compared as std::string: json == string trips GCC 12's -Warray-bounds in nlohmann's inlined code)
    const std::string kind = t.is_string() ? t.get<std::string>() : std::string();
    if (kind != recurrent && kind != "full_attention")
      fail("config",
           "unsupported " + model_type + " layer type " + t.dump() + " (supported: " + recurrent + ", full_attention)");
    flags[i] = kind == recurrent;
  }
  return flags;
}

}  // namespace mlxgp::io
