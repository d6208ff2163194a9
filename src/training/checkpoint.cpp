// Atomic training checkpoints (see include/mlxgp/checkpoint.h).
#include "mlxgp/checkpoint.h"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/fault.h"
#include "core/fsync.h"
#include "mlxgp/error.h"
#include "mlxgp/paths.h"
#include "mlxgp/safetensors_io.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace fs = std::filesystem;

namespace {

void write_text_atomic(const fs::path& path, const std::string& text) {
  auto tmp = path;
  tmp += ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) fail("checkpoint", "cannot write " + tmp.string());
    f << text;
    f.flush();
    if (!f) fail("checkpoint", "cannot write " + tmp.string());
  }
  if (!fsync_path(tmp.string())) fail("checkpoint", "cannot write " + tmp.string() + ": flushing it to disk failed");
  fault_point("text-written");
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) fail("checkpoint", "cannot write " + path.string() + ": " + ec.message());
}

std::string read_text(const fs::path& p) {
  reject_directory(p.string(), "checkpoint");
  std::ifstream f(p, std::ios::binary);
  if (!f) fail("checkpoint", "cannot read " + p.string());
  return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace

std::string save_checkpoint(const std::string& out_dir, int step,
                            const std::unordered_map<std::string, WeightMap>& files, const nlohmann::json& meta,
                            int keep) {
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) fail("checkpoint", "cannot create " + out_dir + ": " + ec.message());
  const std::string name = "checkpoint-" + std::to_string(step);
  const fs::path final_dir = fs::path(out_dir) / name;
  const fs::path tmp_dir = fs::path(out_dir) / (".tmp-" + name + "-" + std::to_string(std::random_device{}()));
  fs::create_directories(tmp_dir, ec);
  if (ec) fail("checkpoint", "cannot create " + tmp_dir.string() + ": " + ec.message());
  try {
    for (auto& [file, tensors] : files) {
      std::unordered_map<std::string, mx::array> t(tensors.begin(), tensors.end());
      save_safetensors_atomic((tmp_dir / (file + ".safetensors")).string(), t, {}, "checkpoint");
    }
    auto m = meta;
    m["step"] = step;
    write_text_atomic(tmp_dir / "meta.json", m.dump(2));
    fault_point("checkpoint-written");
    fs::remove_all(final_dir, ec);  // a stale directory of the same step (an interrupted earlier run)
    fs::rename(tmp_dir, final_dir, ec);
    if (ec) fail("checkpoint", "cannot move the checkpoint into place: " + ec.message());
    fsync_path(out_dir);  // the rename itself, before `latest` names it
  } catch (...) {
    fs::remove_all(tmp_dir, ec);
    throw;
  }
  fault_point("checkpoint-renamed");
  write_text_atomic(fs::path(out_dir) / "latest", name + "\n");
  // Drop the oldest complete checkpoints beyond `keep` (never the one just written).
  std::vector<std::pair<int, fs::path>> found;
  for (auto& e : fs::directory_iterator(out_dir, ec)) {
    auto n = e.path().filename().string();
    if (e.is_directory() && n.rfind("checkpoint-", 0) == 0) {
      try {
        found.push_back({std::stoi(n.substr(11)), e.path()});
      } catch (const std::exception&) {
      }
    }
  }
  std::sort(found.begin(), found.end());
  for (size_t i = 0; keep > 0 && i + keep < found.size(); ++i)
    if (found[i].second != final_dir) fs::remove_all(found[i].second, ec);
  return final_dir.string();
}

int remove_stale_checkpoint_temps(const std::string& out_dir) {
  std::error_code ec;
  if (!fs::is_directory(out_dir, ec)) return 0;
  std::vector<fs::path> stale;
  for (auto& e : fs::directory_iterator(out_dir, ec)) {
    const auto n = e.path().filename().string();
    const bool tmp_dir = n.rfind(".tmp-checkpoint-", 0) == 0 && e.is_directory(ec);
    const bool tmp_file = e.is_regular_file(ec) && (n.ends_with(".tmp.safetensors") || n == "latest.tmp");
    if (tmp_dir || tmp_file) stale.push_back(e.path());
  }
  int removed = 0;
  for (auto& p : stale)
    if (fs::remove_all(p, ec) > 0 && !ec) ++removed;
  return removed;
}

Checkpoint load_checkpoint(const std::string& dir) {
  fs::path p(dir);
  if (!fs::exists(p / "meta.json")) {
    if (!fs::exists(p / "latest")) fail("checkpoint", "no checkpoint in '" + dir + "' (no latest or meta.json)");
    auto name = read_text(p / "latest");
    name.erase(name.find_last_not_of(" \r\n") + 1);
    p /= name;
  }
  Checkpoint c;
  c.path = p.string();
  try {
    c.meta = nlohmann::json::parse(read_text(p / "meta.json"));
    const auto& step = c.meta.at("step");
    // An integer in int range: get<int>() of 3e76 (a float) or of 2^40 is undefined / wraps.
    if (!step.is_number_integer() || step.get<long long>() < 0 || step.get<long long>() > INT32_MAX)
      fail("checkpoint", (p / "meta.json").string() + ": \"step\" must be an integer in [0, 2147483647]");
    c.step = static_cast<int>(step.get<long long>());
    if (c.meta.contains("world_size")) {
      const auto& ws = c.meta["world_size"];
      if (!ws.is_number_integer() || ws.get<long long>() < 1 || ws.get<long long>() > 1000000)
        fail("checkpoint", (p / "meta.json").string() + ": \"world_size\" must be an integer in [1, 1000000]");
    }
  } catch (const nlohmann::json::exception&) {
    fail("checkpoint", (p / "meta.json").string() + " is malformed");
  }
  for (auto& e : fs::directory_iterator(p)) {
    if (e.path().extension() != ".safetensors") continue;
    auto contents = load_safetensors_file(e.path().string());
    WeightMap w;
    for (auto& [k, v] : contents.tensors) w.insert_or_assign(k, v);
    c.files.emplace(e.path().stem().string(), std::move(w));
  }
  return c;
}

}  // namespace mlxgp
