// What a resumed training run must share with its checkpoint (see include/mlxgp/checkpoint.h).
#include <cstdint>
#include <sstream>

#include "mlxgp/checkpoint.h"
#include "mlxgp/distributed.h"
#include "mlxgp/error.h"

namespace mlxgp {

std::string model_content_digest(Model& model) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a of the structure text
  for (unsigned char c : model_fingerprint(model)) h = (h ^ c) * 1099511628211ULL;
  std::ostringstream s;
  s << model.config().model_type << " " << std::hex << h << " " << model_weights_hash(model);
  return s.str();
}

void check_resume_identity(const Checkpoint& ck, const nlohmann::json& identity) {
  const nlohmann::json saved = ck.meta.value("identity", nlohmann::json::object());
  // The model first: checkpoints of older mlxgp builds named it by path and differ in that key alone.
  if (!saved.is_object() || saved.value("model", nlohmann::json()) != identity.value("model", nlohmann::json()))
    fail("train", "checkpoint " + ck.path +
                      " belongs to another model (its weights or architecture differ from this run's; checkpoints "
                      "written before mlxgp compared models by content name theirs by path and cannot be resumed)");
  for (auto& [key, value] : identity.items())
    if (saved.value(key, nlohmann::json()) != value)
      fail("train", "checkpoint " + ck.path + " belongs to another model or training mode (its " + key +
                        " differs from this run's)");
  if (saved.size() != identity.size())
    fail("train", "checkpoint " + ck.path + " belongs to another model or training mode");
}

}  // namespace mlxgp
