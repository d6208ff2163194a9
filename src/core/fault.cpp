#include "core/fault.h"

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>

namespace mlxgp {

namespace {

enum class Action { Kill, Throw };

struct Armed {
  Action action;
  long remaining;  // visits left before it fires
};

struct Plan {
  std::mutex mu;
  std::map<std::string, Armed, std::less<>> points;
  std::atomic<bool> any{false};  // read without the lock on every visit
};

void parse(Plan& p, const char* variable, Action action) {
  const char* env = std::getenv(variable);
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
    if (!item.empty() && n > 0) p.points[std::string(item)] = {action, n};
  }
}

Plan& plan() {
  static Plan* p = [] {
    auto* out = new Plan;
    parse(*out, "MLXGP_FAULT_KILL_AT", Action::Kill);
    parse(*out, "MLXGP_FAULT_THROW_AT", Action::Throw);
    out->any = !out->points.empty();
    return out;
  }();
  return *p;
}

}  // namespace

void fault_point(const char* name) {
  auto& p = plan();
  if (!p.any.load(std::memory_order_relaxed)) return;
  std::unique_lock lock(p.mu);
  auto it = p.points.find(std::string_view(name));
  if (it == p.points.end() || --it->second.remaining > 0) return;
  const Action action = it->second.action;
  p.points.erase(it);
  p.any = !p.points.empty();
  lock.unlock();
  if (action == Action::Kill) std::raise(SIGKILL);
  throw std::runtime_error("[fault] injected failure at " + std::string(name));
}

}  // namespace mlxgp
