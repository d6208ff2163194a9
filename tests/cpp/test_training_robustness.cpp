// Checkpoint folders after interrupted runs (issue 20): what a killed save leaves is removed by the
// next run, never a complete checkpoint; NaN adapters are refused at load.
#include <gtest/gtest.h>

#include <mlx/mlx.h>

#include "mlxgp/checkpoint.h"
#include "mlxgp/lora.h"
#include "mlxgp/safetensors_io.h"
#include "test_models_util.h"

namespace mx = mlx::core;

using namespace mlxgp;
using namespace mlxgp::testing;

TEST(CheckpointRobustness, StaleTemporariesAreRemovedAndCompleteCheckpointsKept) {
  TempDir t;
  const auto out = t / "run";
  save_checkpoint(out.string(), 1, {{"trainer_state", {{"master.x", mx::ones({2})}}}}, {{"identity", "x"}});
  fs::create_directories(out / ".tmp-checkpoint-2-42");
  write_file(out / ".tmp-checkpoint-2-42" / "trainer_state.safetensors", "partial");
  write_file(out / "model.safetensors.tmp.safetensors", "partial");
  write_file(out / "latest.tmp", "checkpoint-");
  write_file(out / "notes.txt", "mine");
  EXPECT_EQ(remove_stale_checkpoint_temps(out.string()), 3);
  EXPECT_TRUE(fs::exists(out / "checkpoint-1" / "trainer_state.safetensors"));
  EXPECT_TRUE(fs::exists(out / "notes.txt"));
  EXPECT_FALSE(fs::exists(out / ".tmp-checkpoint-2-42"));
  EXPECT_EQ(load_checkpoint(out.string()).step, 1);
  EXPECT_EQ(remove_stale_checkpoint_temps(out.string()), 0);
  EXPECT_EQ(remove_stale_checkpoint_temps((t / "missing").string()), 0);
}

TEST(CheckpointRobustness, NonFiniteLoraAdapterIsRefused) {
  TinyModel m;
  LoraConfig c;
  c.rank = 2;
  add_lora(*m.model, c);
  TempDir t;
  const auto path = (t / "a.safetensors").string();
  save_lora(*m.model, path, c);
  auto contents = load_safetensors_file(path);
  std::string poisoned;
  for (auto& [k, v] : contents.tensors)
    if (k.ends_with(".lora_B.weight")) {
      v = mx::full(v.shape(), std::nanf(""), v.dtype());
      poisoned = k;
      break;
    }
  ASSERT_FALSE(poisoned.empty());
  save_safetensors_atomic(path, contents.tensors, {contents.metadata.begin(), contents.metadata.end()});
  TinyModel fresh;
  EXPECT_EQ(error_of([&] { load_lora(*fresh.model, path); }),
            "[lora] " + path + ": adapter '" + poisoned + "' holds NaN or infinite values");
}
