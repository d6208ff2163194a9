#include "core/fault.h"

#include <csignal>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace mlxgp {

namespace {

struct Plan {
  std::mutex mu;
  std::map<std::string, long, std::less<>> remaining;  // point -> visits left before the kill
};

Plan& plan() {
  static Plan* p = [] {
    auto* out = new Plan;
    const char* env = std::getenv("MLXGP_FAULT_KILL_AT");
    std::string_view spec = env ? env : "";
    while (!spec.empty()) {
      auto comma = spec.find(',');
      auto item = spec.substr(0, comma);
      spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
      long n = 1;
      if (auto colon = item.find(':'); colon != std::string_view::npos) {
        n = std::strtol(std::string(item.substr(colon + 1)).c_str(), nullptr, 10);
        item = item.substr(0, colon);
      }
      if (!item.empty() && n > 0) out->remaining[std::string(item)] = n;
    }
    return out;
  }();
  return *p;
}

}  // namespace

void fault_point(const char* name) {
  auto& p = plan();
  if (p.remaining.empty()) return;
  std::lock_guard lock(p.mu);
  auto it = p.remaining.find(std::string_view(name));
  if (it == p.remaining.end() || --it->second > 0) return;
  std::raise(SIGKILL);
}

}  // namespace mlxgp
