// The batched decoding core: left-padded KV caches (rows appended aligned on the right, padding masked,
// per-row positions) compute what each row computes alone, and the BatchEngine's requests, joining
// and leaving at arbitrary steps with their own configs, each produce their solo generate() result.
#include <gtest/gtest.h>

#include <limits>
#include <map>
#include <random>

#include "generation/batch/prefill_pacer.h"
#include "mlxgp/batch_cache.h"
#include "mlxgp/batch_engine.h"
#include "mlxgp/beam_search.h"
#include "mlxgp/error.h"
#include "mlxgp/logits_processor.h"
#include "mlxgp/steering.h"
#include "test_models_util.h"

namespace mx = mlx::core;

namespace mlxgp::testing {
namespace {

std::unique_ptr<Model> tiny(const std::string& type = "llama", const std::string& extra = "") {
  return create_model(parse_model_config(tiny_config_json(type, extra)), tiny_weights(11));
}

std::vector<int> ids_of(int n, int salt) {
  std::vector<int> ids;
  for (int i = 0; i < n; ++i) ids.push_back((i * 13 + salt * 7 + 1) % 64);
  return ids;
}

mx::array row_array(const std::vector<int>& ids) {
  return mx::array(ids.data(), {1, static_cast<int>(ids.size())}, mx::int32);
}

// Prefills `prompt` alone, then feeds `steps` (each a chunk of tokens) and returns the logits of each chunk.
std::vector<mx::array> solo(Model& m, const std::vector<int>& prompt, const std::vector<std::vector<int>>& steps) {
  auto caches = m.make_caches();
  mx::eval(m.forward(row_array(prompt), caches));
  std::vector<mx::array> out;
  for (auto& s : steps) out.push_back(m.forward(row_array(s), caches));
  mx::eval(out);
  return out;
}

void check_padded_rows_match(Model& m) {
  const std::vector<std::vector<int>> prompts = {ids_of(5, 1), ids_of(17, 2), ids_of(1, 3)};
  // Each row continues with its own tokens: two single-token steps, then a 3-token chunk (a
  // multi-query step over a padded batch needs the causal-and-padding mask).
  const std::vector<std::vector<std::vector<int>>> steps = {
      {{3}, {9}, {1, 2, 3}}, {{40}, {41}, {7, 8, 9}}, {{63}, {0}, {10, 20, 30}}};
  KVCacheList batch;
  for (auto& p : prompts) {
    auto c = m.make_caches();
    mx::eval(m.forward(row_array(p), c));
    append_rows(batch, std::move(c));
  }
  ASSERT_EQ(batch[0]->offset(), 17);
  ASSERT_EQ(batch[0]->left_padding(), (std::vector<int>{12, 0, 16}));
  for (size_t s = 0; s < steps[0].size(); ++s) {
    std::vector<int> flat;
    for (auto& row : steps) flat.insert(flat.end(), row[s].begin(), row[s].end());
    const int t = static_cast<int>(steps[0][s].size());
    auto logits = m.forward(mx::array(flat.data(), {3, t}, mx::int32), batch);
    mx::eval(logits);
    for (int r = 0; r < 3; ++r) {
      std::vector<std::vector<int>> upto(steps[r].begin(), steps[r].begin() + s + 1);
      auto alone = solo(m, prompts[r], upto).back();
      auto mine = mx::slice(logits, {r, 0, 0}, {r + 1, t, logits.shape(2)});
      EXPECT_LT(max_abs_diff(mine, alone), 1e-5f) << "row " << r << " step " << s;
    }
  }
}

// A tiny llama whose head_dim (32) takes 4-bit KV quantization in groups of 32.
std::unique_ptr<Model> tiny_d32() {
  const std::string config = R"({"model_type": "llama", "vocab_size": 64, "hidden_size": 64,
    "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false})";
  WeightMap w;
  uint64_t n = 0;
  auto rnd = [&](const mx::Shape& s) { return mx::random::normal(s, 0.0f, 0.2f, mx::random::key(500 + ++n)); };
  w.emplace("model.embed_tokens.weight", rnd({64, 64}));
  w.emplace("lm_head.weight", rnd({64, 64}));
  w.emplace("model.norm.weight", mx::ones({64}));
  for (int i = 0; i < 2; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    w.emplace(p + "input_layernorm.weight", mx::ones({64}));
    w.emplace(p + "post_attention_layernorm.weight", mx::ones({64}));
    w.emplace(p + "self_attn.q_proj.weight", rnd({64, 64}));
    w.emplace(p + "self_attn.k_proj.weight", rnd({32, 64}));
    w.emplace(p + "self_attn.v_proj.weight", rnd({32, 64}));
    w.emplace(p + "self_attn.o_proj.weight", rnd({64, 64}));
    w.emplace(p + "mlp.gate_proj.weight", rnd({64, 64}));
    w.emplace(p + "mlp.up_proj.weight", rnd({64, 64}));
    w.emplace(p + "mlp.down_proj.weight", rnd({64, 64}));
  }
  return create_model(parse_model_config(config), w);
}

TEST(BatchCache, PaddedRowsComputeWhatTheyComputeAlone) {
  auto m = tiny();
  check_padded_rows_match(*m);
}

TEST(BatchCache, PaddedRowsWithSlidingWindowAttention) {
  auto m = tiny("mistral", R"(, "sliding_window": 4)");
  check_padded_rows_match(*m);
}

TEST(BatchCache, LeavingRowsDropTheSharedPadding) {
  auto m = tiny();
  KVCacheList batch;
  for (int n : {4, 30, 9}) {
    auto c = m->make_caches();
    mx::eval(m->forward(row_array(ids_of(n, n)), c));
    append_rows(batch, std::move(c));
  }
  keep_rows(batch, {2, 0});  // the 30-token row leaves: 21 positions of padding are shared by the rest
  EXPECT_EQ(batch[0]->offset(), 9);
  EXPECT_EQ(batch[0]->left_padding(), (std::vector<int>{0, 5}));
  auto logits = m->forward(mx::array({5, 6}, {2, 1}), batch);
  auto a = solo(*m, ids_of(9, 9), {{5}}).back(), b = solo(*m, ids_of(4, 4), {{6}}).back();
  EXPECT_LT(max_abs_diff(mx::slice(logits, {0, 0, 0}, {1, 1, 64}), a), 1e-5f);
  EXPECT_LT(max_abs_diff(mx::slice(logits, {1, 0, 0}, {2, 1, 64}), b), 1e-5f);
}

TEST(BatchCache, QuantizedRowsComputeWhatTheyComputeAlone) {
  const CpuDeviceScope cpu;  // MLX's CUDA quantized_matmul has no kernel for the tiny model's 32-wide rows
  auto m = tiny_d32();
  CacheOptions q4;
  q4.kv_bits = 4;
  q4.kv_group_size = 32;
  const std::vector<std::vector<int>> prompts = {ids_of(6, 1), ids_of(19, 2), ids_of(2, 3)};
  KVCacheList batch;
  std::vector<KVCacheList> alone;
  for (auto& p : prompts) {
    for (int copy = 0; copy < 2; ++copy) {
      auto c = make_caches(*m, q4);
      mx::eval(m->forward(row_array(p), c));
      if (copy == 0) append_rows(batch, std::move(c));
      else alone.push_back(std::move(c));
    }
  }
  ASSERT_EQ(batch[0]->left_padding(), (std::vector<int>{13, 0, 17}));
  for (int step = 0; step < 3; ++step) {
    std::vector<int> tokens = {5 + step, 30 + step, 60 - step};
    auto logits = m->forward(mx::array(tokens.data(), {3, 1}, mx::int32), batch);
    for (int r = 0; r < 3; ++r) {
      auto solo_logits = m->forward(mx::array(&tokens[r], {1, 1}, mx::int32), alone[r]);
      EXPECT_LT(max_abs_diff(mx::slice(logits, {r, 0, 0}, {r + 1, 1, 64}), solo_logits), 1e-4f) << r << " " << step;
    }
    if (step == 1) {  // the longest row leaves: the others keep what they compute
      keep_rows(batch, {0, 2});
      alone.erase(alone.begin() + 1);
      break;
    }
  }
  EXPECT_EQ(batch[0]->offset(), 8);
  auto logits = m->forward(mx::array({7, 9}, {2, 1}), batch);
  auto a = m->forward(mx::array({7}, {1, 1}), alone[0]), b = m->forward(mx::array({9}, {1, 1}), alone[1]);
  EXPECT_LT(max_abs_diff(mx::slice(logits, {0, 0, 0}, {1, 1, 64}), a), 1e-4f);
  EXPECT_LT(max_abs_diff(mx::slice(logits, {1, 0, 0}, {2, 1, 64}), b), 1e-4f);
}

// Rotating caches (max_kv_size) of rows of different lengths (shorter than the window, past it, and
// prefilled in several chunks) keep, step after step while their rings wrap, the view each has alone;
// rows leave and join mid-way. keep = 0 and keep = 3 alike. The last row to join holds one token, so the
// batch writes its kept positions itself (a batch once left them empty and read zeros there).
void check_rotating_rows_match(int keep) {
  auto m = tiny();
  CacheOptions rotating;
  rotating.max_kv_size = 8;
  rotating.kv_keep = keep;
  const std::vector<std::vector<int>> prompts = {ids_of(3, 1), ids_of(20, 2), ids_of(7, 3), ids_of(11, 4),
                                                 ids_of(1, 5)};
  KVCacheList batch;
  std::vector<KVCacheList> alone;
  std::vector<int> rows;  // the prompt of each batch row
  auto join = [&](int p) {
    for (int copy = 0; copy < 2; ++copy) {
      auto c = make_caches(*m, rotating);
      const auto& ids = prompts[p];
      if (p == 1) {  // two chunks: the second trims the first as a chunked prefill does
        std::vector<int> a(ids.begin(), ids.begin() + 12), b(ids.begin() + 12, ids.end());
        mx::eval(m->forward(row_array(a), c));
        mx::eval(m->forward(row_array(b), c));
      } else {
        mx::eval(m->forward(row_array(ids), c));
      }
      if (copy == 0) append_rows(batch, std::move(c));
      else alone.push_back(std::move(c));
    }
    rows.push_back(p);
  };
  join(0);
  join(1);
  join(2);
  for (int step = 0; step < 22; ++step) {
    if (step == 5) {  // the 20-token row leaves
      keep_rows(batch, {0, 2});
      alone.erase(alone.begin() + 1);
      rows.erase(rows.begin() + 1);
    }
    if (step == 7) join(3);
    if (step == 9) join(4);
    const int n = static_cast<int>(rows.size());
    std::vector<int> tokens;
    for (int r = 0; r < n; ++r) tokens.push_back((step * 5 + rows[r] * 11) % 64);
    auto logits = m->forward(mx::array(tokens.data(), {n, 1}, mx::int32), batch);
    for (int r = 0; r < n; ++r) {
      auto solo_logits = m->forward(mx::array(&tokens[r], {1, 1}, mx::int32), alone[r]);
      EXPECT_LT(max_abs_diff(mx::slice(logits, {r, 0, 0}, {r + 1, 1, 64}), solo_logits), 1e-5f)
          << "keep " << keep << " prompt " << rows[r] << " step " << step;
    }
  }
}

TEST(BatchCache, RotatingRowsKeepTheirSoloView) { check_rotating_rows_match(0); }
TEST(BatchCache, RotatingRowsWithKeptPositionsKeepTheirSoloView) { check_rotating_rows_match(3); }

TEST(BatchCache, RowsOfDifferentCacheKindsAreRefused) {
  auto m = tiny();
  auto refused = [&](const CacheOptions& x, const CacheOptions& y) {
    auto a = make_caches(*m, x), b = make_caches(*m, y);
    mx::eval(m->forward(row_array(ids_of(3, 1)), a));
    mx::eval(m->forward(row_array(ids_of(5, 2)), b));
    try {
      append_rows(a, std::move(b));
      FAIL() << "expected [cache]";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind("[cache]", 0), 0u) << e.what();
    }
  };
  CacheOptions standard, rot8, rot9;
  rot8.max_kv_size = 8;
  rot9.max_kv_size = 9;
  refused(standard, rot8);
  refused(rot8, standard);
  refused(rot8, rot9);
}

struct Case {
  std::vector<int> prompt;
  GenerationConfig config;
};

std::vector<Case> mixed_cases() {
  std::vector<Case> cases;
  auto add = [&](int len, int salt, auto&& edit) {
    Case c{ids_of(len, salt), {}};
    c.config.max_new_tokens = 6 + salt % 5;
    edit(c.config);
    cases.push_back(std::move(c));
  };
  add(3, 1, [](GenerationConfig&) {});
  // A second greedy request without processors: the two share one argmax and guard (DecodeGroup::pick_greedy).
  add(17, 9, [](GenerationConfig& c) {
    c.output_scores = true;
    c.output_logits = true;
  });
  add(25, 2, [](GenerationConfig& c) { c.repetition_penalty = 1.5; });
  add(8, 3, [](GenerationConfig& c) {
    c.do_sample = true;
    c.temperature = 0.8;
    c.seed = 5;
  });
  add(1, 4, [](GenerationConfig& c) { c.no_repeat_ngram_size = 2; });
  add(14, 5, [](GenerationConfig& c) {
    c.do_sample = true;
    c.top_k = 5;
    c.seed = 9;
    c.num_return_sequences = 2;
  });
  add(6, 6, [](GenerationConfig& c) {
    c.eos_token_id = std::vector<int>{7, 8, 9, 10, 11};
    c.min_new_tokens = 2;
    c.output_scores = true;
    c.output_logprobs = true;
  });
  add(11, 8, [](GenerationConfig& c) { c.guidance_scale = 1.8; });  // CFG: its own unconditional forward
  add(40, 7, [](GenerationConfig& c) {
    c.do_sample = true;
    c.top_p = 0.9;
    c.seed = 1;
    c.presence_penalty = 0.5;
  });
  return cases;
}

// generate_batch over the cases, `rows` rows at a time.
std::vector<GenerationResult> batch_of(Model& m, const std::vector<Case>& cases, int rows,
                                       std::vector<std::string>* alone = nullptr) {
  std::vector<std::vector<int>> prompts;
  std::vector<GenerationConfig> configs;
  for (auto& c : cases) {
    prompts.push_back(c.prompt);
    configs.push_back(c.config);
  }
  BatchGenerateOptions o;
  o.batch_size = rows;
  if (alone) o.on_alone = [alone](int i, const std::string& why) { alone->push_back(std::to_string(i) + ": " + why); };
  return generate_batch(m, nullptr, prompts, configs, o);
}

TEST(BatchEngine, RequestsJoiningAndLeavingAtRandomStepsEqualTheirSoloRuns) {
  auto m = tiny();
  auto cases = mixed_cases();
  std::vector<GenerationResult> alone;
  for (auto& c : cases) alone.push_back(generate(*m, nullptr, c.prompt, c.config));
  for (int trial = 0; trial < 3; ++trial) {
    BatchEngine engine(*m, nullptr, {3 + trial});
    std::mt19937 rng(trial);
    std::vector<int> ids(cases.size(), -1);
    std::vector<std::optional<GenerationResult>> got(cases.size());
    std::vector<std::vector<int>> streamed(cases.size());
    size_t next = 0;
    while (next < cases.size() || engine.busy()) {
      // Submit 0-2 requests before each step, so they join a batch already running.
      for (int k = rng() % 3; k > 0 && next < cases.size(); --k, ++next) {
        const size_t i = next;
        ids[i] = engine.submit(
            {cases[i].prompt, cases[i].config, {}, [&streamed, i](int row, int token, const std::string&) {
               if (row == 0) streamed[i].push_back(token);
             }});
      }
      for (int id : engine.step())
        for (size_t i = 0; i < cases.size(); ++i)
          if (ids[i] == id) got[i] = engine.take_result(id);
    }
    for (size_t i = 0; i < cases.size(); ++i) {
      ASSERT_TRUE(got[i]) << "request " << i;
      ASSERT_EQ(got[i]->sequences.size(), alone[i].sequences.size());
      for (size_t s = 0; s < alone[i].sequences.size(); ++s) {
        EXPECT_EQ(got[i]->sequences[s].token_ids, alone[i].sequences[s].token_ids)
            << "trial " << trial << " request " << i;
        EXPECT_EQ(got[i]->sequences[s].finish_reason, alone[i].sequences[s].finish_reason);
        EXPECT_EQ(got[i]->sequences[s].logprobs.size(), alone[i].sequences[s].logprobs.size());
        for (size_t k = 0; k < alone[i].sequences[s].logprobs.size(); ++k)
          EXPECT_NEAR(got[i]->sequences[s].logprobs[k], alone[i].sequences[s].logprobs[k], 1e-4);
      }
      EXPECT_EQ(streamed[i], alone[i].sequences[0].token_ids);
    }
  }
}

// Beam searches and speculative runs share the engine's rows with sampled requests (the beam batch and
// the speculative lane, stepped after the sampled rows): joining and leaving at random steps, each equals
// its solo run; a cancelled beam search leaves at once with empty sequences, and the others are unaffected.
TEST(BatchEngine, BeamSearchesAndSpeculativeRunsJoiningAtRandomStepsEqualTheirSoloRuns) {
  auto m = tiny();
  auto cases = mixed_cases();
  cases.resize(4);
  auto beams = [&](int len, int salt, auto&& edit) {
    Case c{ids_of(len, salt), {}};
    c.config.max_new_tokens = 5 + salt % 4;
    c.config.num_beams = 3;
    edit(c.config);
    cases.push_back(std::move(c));
  };
  beams(9, 11, [](GenerationConfig&) {});
  beams(2, 12, [](GenerationConfig& c) {
    c.num_return_sequences = 2;
    c.length_penalty = 0.7;
  });
  beams(17, 13, [](GenerationConfig& c) {
    c.do_sample = true;  // beam sampling with its own seed
    c.seed = 4;
  });
  beams(5, 14, [](GenerationConfig& c) {
    c.num_beams = 4;
    c.num_beam_groups = 2;  // diverse group beams
    c.diversity_penalty = 0.5;
  });
  beams(12, 15, [](GenerationConfig& c) { c.repetition_penalty = 1.3; });
  // The speculative lane: prompt lookup and a self-speculative draft, one round each per step.
  Case lookup{ids_of(13, 16), {}};
  lookup.config.max_new_tokens = 9;
  lookup.config.prompt_lookup_num_tokens = 3;
  cases.insert(cases.begin() + 2, lookup);
  Case self_draft{ids_of(6, 17), {}};
  self_draft.config.max_new_tokens = 8;
  self_draft.config.use_speculative = true;
  self_draft.config.draft_layers = 1;
  self_draft.config.do_sample = true;
  self_draft.config.seed = 3;
  cases.insert(cases.begin() + 5, self_draft);
  std::vector<GenerationResult> alone;
  for (auto& c : cases)
    alone.push_back(c.config.num_beams > 1 ? beam_search(*m, nullptr, c.prompt, c.config)
                                           : generate(*m, nullptr, c.prompt, c.config));
  const size_t cancelled = cases.size() - 1;
  for (int trial = 0; trial < 3; ++trial) {
    BatchEngine engine(*m, nullptr, {6 + 2 * trial});
    std::mt19937 rng(100 + trial);
    std::vector<int> ids(cases.size(), -1);
    std::vector<std::optional<GenerationResult>> got(cases.size());
    size_t next = 0;
    int steps = 0;
    while (next < cases.size() || engine.busy()) {
      for (int k = rng() % 3; k > 0 && next < cases.size(); --k, ++next)
        ids[next] = engine.submit({cases[next].prompt, cases[next].config});
      if (++steps == 6 + trial && ids[cancelled] >= 0 && !got[cancelled]) {
        engine.cancel(ids[cancelled]);  // outside step(): its result is ready now
        got[cancelled] = engine.take_result(ids[cancelled]);
      }
      for (int id : engine.step())
        for (size_t i = 0; i < cases.size(); ++i)
          if (ids[i] == id) got[i] = engine.take_result(id);
    }
    for (size_t i = 0; i < cases.size(); ++i) {
      ASSERT_TRUE(got[i]) << "request " << i;
      ASSERT_EQ(got[i]->sequences.size(), alone[i].sequences.size()) << "request " << i;
      for (size_t s = 0; s < alone[i].sequences.size(); ++s) {
        if (i == cancelled && ids[i] >= 0 && got[i]->sequences[s].finish_reason == FinishReason::Cancelled) {
          EXPECT_TRUE(got[i]->sequences[s].token_ids.empty());
          continue;
        }
        EXPECT_EQ(got[i]->sequences[s].token_ids, alone[i].sequences[s].token_ids)
            << "trial " << trial << " request " << i;
        EXPECT_EQ(got[i]->sequences[s].finish_reason, alone[i].sequences[s].finish_reason);
        if (alone[i].sequences[s].sequence_score) {
          ASSERT_TRUE(got[i]->sequences[s].sequence_score);
          EXPECT_NEAR(*got[i]->sequences[s].sequence_score, *alone[i].sequences[s].sequence_score, 1e-4);
          EXPECT_EQ(got[i]->sequences[s].beam_indices, alone[i].sequences[s].beam_indices);
        }
      }
    }
  }
  // Beams cannot stream top_logprobs: refused in one line.
  BatchEngine engine(*m, nullptr, {4});
  BatchRequest r{cases.back().prompt, cases.back().config};
  r.top_logprobs = 2;
  EXPECT_THROW(engine.submit(std::move(r)), Error);
}

TEST(BatchEngine, HooksActOnEveryRowAsOnItsSoloRun) {
  auto m = tiny();
  // Steering on generated positions only (the prompt/generated split must hold per row) and a
  // persona logit bias, attached to the model: they act inside every forward, batched or not.
  auto v = mx::random::normal({32}, 0.0f, 1.0f, mx::random::key(3));
  add_hook(*m, std::make_shared<ResidualInjectionHook>(std::vector<int>{0}, v, 2.0, HookPositions::Generated));
  add_hook(*m, std::make_shared<LogitBiasHook>(v, 0.5));
  auto cases = mixed_cases();
  auto batched = batch_of(*m, cases, 5);
  int differs_from_unhooked = 0;
  auto bare = tiny();
  for (size_t i = 0; i < cases.size(); ++i) {
    auto alone = generate(*m, nullptr, cases[i].prompt, cases[i].config);
    EXPECT_EQ(batched[i].sequences[0].token_ids, alone.sequences[0].token_ids) << "request " << i;
    differs_from_unhooked += generate(*bare, nullptr, cases[i].prompt, cases[i].config).sequences[0].token_ids !=
                             alone.sequences[0].token_ids;
  }
  EXPECT_GT(differs_from_unhooked, 0);  // the hooks bite
}

TEST(BatchEngine, CancelledRequestLeavesAndTheOthersGoOn) {
  auto m = tiny();
  auto cases = mixed_cases();
  BatchEngine engine(*m, nullptr, {8});
  GenerationConfig long_one;
  long_one.max_new_tokens = 50;
  int victim = engine.submit({ids_of(10, 1), long_one, {}, {}});
  int other = engine.submit({cases[1].prompt, cases[1].config, {}, {}});
  engine.step();
  engine.step();
  EXPECT_EQ(engine.running_rows(), 2);
  engine.cancel(victim);
  EXPECT_EQ(engine.running_rows(), 1);
  auto v = engine.take_result(victim);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->sequences[0].finish_reason, FinishReason::Cancelled);
  EXPECT_EQ(v->sequences[0].token_ids.size(), 3u);  // the prefill's token and two decode steps
  std::optional<GenerationResult> o;
  while (engine.busy())
    for (int id : engine.step())
      if (id == other) o = engine.take_result(id);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->sequences[0].token_ids, generate(*m, nullptr, cases[1].prompt, cases[1].config).sequences[0].token_ids);
  // A request cancelled while it waits leaves at once, with its prompt and no tokens.
  BatchEngine small(*m, nullptr, {1});
  small.submit({ids_of(5, 1), long_one, {}, {}});
  int waiting = small.submit({ids_of(7, 2), long_one, {}, {}});
  small.step();
  EXPECT_EQ(small.queued(), 1);
  small.cancel(waiting);
  auto w = small.take_result(waiting);
  ASSERT_TRUE(w);
  EXPECT_EQ(w->prompt_token_ids, ids_of(7, 2));
  EXPECT_TRUE(w->sequences[0].token_ids.empty());
  EXPECT_EQ(w->sequences[0].finish_reason, FinishReason::Cancelled);
  EXPECT_EQ(small.queued(), 0);
}

// A request whose own step fails (here a user processor that refuses its first token, or its fourth)
// ends with that error in every lane, the sampled rows, the beam batch and the speculative lane alike;
// the requests beside it go on to their solo results. (Before, a sampled request whose processor threw,
// a beam search or a prompt-lookup run failed every request of the engine.)
TEST(BatchEngine, ARequestFailingInItsOwnStepFailsAloneInEveryLane) {
  auto m = tiny();
  auto cases = mixed_cases();
  const std::vector<int> prompt = ids_of(6, 3);
  for (int refused_at : {0, 3}) {
    GeneratorOptions failing;
    failing.logits_processors.push_back(std::shared_ptr<const LogitsProcessor>(
        make_callback_processor([&, refused_at](const mx::array& logits, const mx::array& ids) {
          if (ids.shape(1) >= static_cast<int>(prompt.size()) + refused_at) fail("test", "refused");
          return logits;
        })));
    GenerationConfig sampled, beams, lookup;
    sampled.max_new_tokens = beams.max_new_tokens = lookup.max_new_tokens = 12;
    beams.num_beams = 2;
    lookup.prompt_lookup_num_tokens = 2;
    BatchEngine engine(*m, nullptr, {8});
    const int good = engine.submit({cases[1].prompt, cases[1].config, {}, {}});
    std::vector<int> bad;
    for (const GenerationConfig& c : {sampled, beams, lookup}) bad.push_back(engine.submit({prompt, c, failing, {}}));
    std::map<int, GenerationResult> results;
    for (int steps = 0; engine.busy() && steps < 200; ++steps)
      for (int id : engine.step()) results.emplace(id, *engine.take_result(id));
    ASSERT_FALSE(engine.busy());
    for (int id : bad) {
      ASSERT_TRUE(results.count(id)) << id;
      const GenerationResult& r = results.at(id);
      ASSERT_TRUE(r.error) << id << " refused at " << refused_at;
      EXPECT_EQ(std::string(r.error->what()), "[test] refused");
      EXPECT_EQ(r.prompt_token_ids, prompt);
      EXPECT_LE(r.sequences.at(0).token_ids.size(), static_cast<size_t>(refused_at));  // nothing past it
    }
    ASSERT_TRUE(results.count(good));
    EXPECT_FALSE(results.at(good).error);
    EXPECT_EQ(results.at(good).sequences[0].token_ids,
              generate(*m, nullptr, cases[1].prompt, cases[1].config).sequences[0].token_ids);
  }
}

// Settings a request's steps would only fail on (token ids outside the vocabulary, cache options) are
// refused when it is submitted, in every lane: a step that other requests share never fails for them.
TEST(BatchEngine, SettingsThatWouldFailAStepAreRefusedAtSubmit) {
  auto m = tiny();
  auto cases = mixed_cases();
  BatchEngine engine(*m, nullptr, {8});
  int running = engine.submit({cases[1].prompt, cases[1].config, {}, {}});
  engine.step();
  const int vocab = m->config().vocab_size;
  auto refused = [&](GenerationConfig c, const std::string& why) {
    c.max_new_tokens = 4;
    EXPECT_NE(error_of([&] { engine.submit({ids_of(6, 2), c, {}, {}}); }).find(why), std::string::npos) << why;
    c.num_beams = 2;  // the beam lane
    EXPECT_NE(error_of([&] { engine.submit({ids_of(6, 2), c, {}, {}}); }).find(why), std::string::npos) << why;
  };
  GenerationConfig c;
  c.logit_bias = std::vector<std::pair<int, double>>{{vocab, 1.0}};
  refused(c, "logit_bias token id");
  c = {};
  c.bad_words_ids = std::vector<std::vector<int>>{{vocab + 3}};
  refused(c, "bad_words_ids token id");
  c = {};
  c.forced_eos_token_id = std::vector<int>{vocab};
  refused(c, "forced_eos_token_id");
  c = {};
  c.max_kv_size = 2;  // kv_keep 4
  refused(c, "kv keep must be in [0, max_kv_size)");
  c = {};
  c.kv_bits = 4;
  c.kv_group_size = 7;
  refused(c, "kv group size");
  c = {};
  c.num_beams = std::numeric_limits<int32_t>::max() / vocab + 1;  // its scores would not fit one array
  EXPECT_NE(error_of([&] { engine.submit({ids_of(6, 2), c, {}, {}}); }).find("2^31"), std::string::npos);
  std::optional<GenerationResult> r;
  while (engine.busy())
    for (int id : engine.step())
      if (id == running) r = engine.take_result(id);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->sequences[0].token_ids, generate(*m, nullptr, cases[1].prompt, cases[1].config).sequences[0].token_ids);
}

TEST(BatchEngine, MaxJoinsPerStepAdmitsThatManyWhileRowsDecode) {
  auto m = tiny();
  GenerationConfig c;
  c.max_new_tokens = 6;
  c.min_new_tokens = 6;
  for (int limit : {0, 1, 2}) {
    BatchEngineOptions o;
    o.max_batch_rows = 8;
    o.max_joins_per_step = limit;
    BatchEngine engine(*m, nullptr, o);
    // An idle engine admits every request that fits, whatever the limit.
    engine.submit({ids_of(4, 1), c, {}, {}});
    engine.submit({ids_of(6, 2), c, {}, {}});
    engine.step();
    EXPECT_EQ(engine.running_rows(), 2) << limit;
    std::vector<int> ids;
    for (int i = 0; i < 5; ++i) ids.push_back(engine.submit({ids_of(3 + i, 10 + i), c, {}, {}}));
    // (A step queued before the submissions runs first: they join at the step after it.)
    while (engine.queued() == 5) engine.step();
    EXPECT_EQ(engine.running_rows(), limit == 0 ? 7 : 2 + limit) << limit;
    EXPECT_EQ(engine.queued(), limit == 0 ? 0 : 5 - limit) << limit;
    std::map<int, GenerationResult> results;
    while (engine.busy())
      for (int id : engine.step()) results.emplace(id, *engine.take_result(id));
    // Joining later changes no request's tokens.
    for (int i = 0; i < 5; ++i)
      EXPECT_EQ(results.at(ids[i]).sequences[0].token_ids,
                generate(*m, nullptr, ids_of(3 + i, 10 + i), c).sequences[0].token_ids)
          << limit << " " << i;
  }
}

TEST(BatchEngine, CancelFromATokenCallbackTakesEffectAfterTheStep) {
  auto m = tiny();
  BatchEngine engine(*m, nullptr);
  GenerationConfig c;
  c.max_new_tokens = 40;
  int id = -1;
  int seen = 0;
  id = engine.submit({ids_of(4, 2), c, {}, [&](int, int, const std::string&) {
                        if (++seen == 3) engine.cancel(id);
                      }});
  std::vector<int> finished;
  while (engine.busy()) finished = engine.step();
  ASSERT_EQ(finished, std::vector<int>{id});
  auto r = engine.take_result(id);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->sequences[0].finish_reason, FinishReason::Cancelled);
  EXPECT_EQ(r->sequences[0].token_ids.size(), 3u);
}

TEST(BatchEngine, RefusesWhatCannotShareABatchInOneLine) {
  auto m = tiny();
  BatchEngine engine(*m, nullptr);
  auto expect_refused = [&](GenerationConfig c, const std::string& what) {
    c.max_new_tokens = 4;
    try {
      engine.submit({ids_of(3, 1), c, {}, {}});
      FAIL() << "expected a refusal for " << what;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind("[generate]", 0), 0u) << msg;
      EXPECT_NE(msg.find(what), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos);
    }
  };
  GenerationConfig late_quant;
  late_quant.kv_bits = 4;
  late_quant.quantized_kv_start = 10;  // beyond the 3-token prompt
  expect_refused(late_quant, "quantized_kv_start");
  GenerationConfig lookup;  // the speculative lane takes it, but cannot report top_logprobs
  lookup.prompt_lookup_num_tokens = 3;
  lookup.max_new_tokens = 4;
  BatchRequest with_logprobs{ids_of(3, 1), lookup, {}, {}};
  with_logprobs.top_logprobs = 1;
  EXPECT_THROW(engine.submit(std::move(with_logprobs)), Error);
  // A bad prompt is refused at submit, before it can enter the queue.
  GenerationConfig ok;
  ok.max_new_tokens = 2;
  EXPECT_THROW(engine.submit({{1, 999}, ok, {}, {}}), Error);
  EXPECT_FALSE(engine.busy());
}

TEST(GenerateBatch, ResultsInInputOrderAndEveryRequestEqualsItsSoloRun) {
  auto m = tiny();
  auto cases = mixed_cases();
  GenerationConfig beams;
  beams.num_beams = 3;
  beams.max_new_tokens = 5;
  cases.push_back({ids_of(9, 8), beams});
  GenerationConfig rotating;
  rotating.max_kv_size = 12;
  rotating.max_new_tokens = 10;
  cases.push_back({ids_of(20, 9), rotating});
  cases.push_back({ids_of(5, 10), rotating});  // shares the first rotating request's batch
  GenerationConfig rotating_beams = rotating;
  rotating_beams.num_beams = 2;
  cases.push_back({ids_of(14, 11), rotating_beams});
  cases.push_back({ids_of(6, 12), rotating_beams});
  GenerationConfig lookup;  // the speculative lane
  lookup.prompt_lookup_num_tokens = 2;
  lookup.max_new_tokens = 6;
  cases.push_back({ids_of(12, 13), lookup});
  GenerationConfig self_draft = lookup;
  self_draft.prompt_lookup_num_tokens.reset();
  self_draft.use_speculative = true;
  self_draft.draft_layers = 1;
  cases.push_back({ids_of(7, 15), self_draft});
  GenerationConfig late_quant;
  late_quant.kv_bits = 4;
  late_quant.quantized_kv_start = 40;  // beyond the prompt
  late_quant.max_new_tokens = 5;
  cases.push_back({ids_of(10, 14), late_quant});
  std::vector<std::string> alone_runs;
  auto results = batch_of(*m, cases, 4, &alone_runs);
  // Only the late-quantization request runs alone, and the caller is told so in one line.
  ASSERT_EQ(alone_runs.size(), 1u);
  EXPECT_EQ(alone_runs[0].rfind(std::to_string(cases.size() - 1) + ": ", 0), 0u) << alone_runs[0];
  EXPECT_NE(alone_runs[0].find("quantized_kv_start"), std::string::npos) << alone_runs[0];
  ASSERT_EQ(results.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    auto alone = generate(*m, nullptr, cases[i].prompt, cases[i].config);
    EXPECT_EQ(results[i].prompt_token_ids, cases[i].prompt);
    ASSERT_EQ(results[i].sequences.size(), alone.sequences.size());
    for (size_t s = 0; s < alone.sequences.size(); ++s)
      EXPECT_EQ(results[i].sequences[s].token_ids, alone.sequences[s].token_ids) << "request " << i;
  }
  std::vector<std::vector<int>> prompts = {cases[0].prompt, cases[1].prompt, cases[2].prompt};
  EXPECT_THROW(generate_batch(*m, nullptr, prompts, {cases[0].config, cases[1].config}), Error);
}

TEST(GenerateBatch, BeamSearchesOfEveryKindShareABatchAndEqualTheirSoloRuns) {
  auto m = tiny();
  std::vector<std::vector<int>> prompts;
  std::vector<GenerationConfig> configs;
  auto add = [&](int len, int salt, auto&& edit) {
    GenerationConfig c;
    c.num_beams = 3;
    c.max_new_tokens = 7 + salt % 3;
    edit(c);
    prompts.push_back(ids_of(len, salt));
    configs.push_back(c);
  };
  add(4, 1, [](GenerationConfig&) {});
  add(23, 2, [](GenerationConfig& c) {
    c.num_beams = 4;
    c.num_return_sequences = 2;
    c.repetition_penalty = 1.4;
    c.output_scores = true;
  });
  add(1, 3, [](GenerationConfig& c) {
    c.do_sample = true;  // beam sampling with its own seed
    c.seed = 11;
  });
  add(9, 4, [](GenerationConfig& c) {
    c.eos_token_id = std::vector<int>{3, 4, 5, 6};
    c.length_penalty = 0.5;
    c.early_stopping = EarlyStopping::True;
  });
  add(15, 5, [](GenerationConfig& c) { c.guidance_scale = 1.5; });
  add(6, 6, [](GenerationConfig& c) {  // diverse group beams
    c.num_beams = 4;
    c.num_beam_groups = 2;
    c.diversity_penalty = 0.7;
    c.output_scores = true;
  });
  add(12, 7, [](GenerationConfig& c) {  // constrained beams
    c.force_words_ids = ForceWords{{{17, 18}}, {{40}, {41}}};
    c.max_new_tokens = 9;
  });
  BatchGenerateOptions o;
  o.batch_size = 8;  // several batches of searches
  auto batched = generate_batch(*m, nullptr, prompts, configs, o);
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto alone = generate(*m, nullptr, prompts[i], configs[i]);
    ASSERT_EQ(batched[i].sequences.size(), alone.sequences.size());
    for (size_t s = 0; s < alone.sequences.size(); ++s) {
      const auto &a = batched[i].sequences[s], &b = alone.sequences[s];
      EXPECT_EQ(a.token_ids, b.token_ids) << "search " << i;
      EXPECT_EQ(a.beam_indices, b.beam_indices);
      ASSERT_TRUE(a.sequence_score && b.sequence_score);
      EXPECT_NEAR(*a.sequence_score, *b.sequence_score, 1e-5);
      ASSERT_EQ(a.token_scores.size(), b.token_scores.size());
      for (size_t k = 0; k < a.token_scores.size(); ++k) EXPECT_NEAR(a.token_scores[k], b.token_scores[k], 1e-4);
    }
  }
}

// While a row decodes, a joining 10-token prompt goes in 4 tokens a step: its first token comes at the third
// step, and every request's tokens are its solo run's.
TEST(BatchEngine, PrefillStepTokensSplitsAJoiningPrompt) {
  auto m = tiny();
  GenerationConfig c;
  c.max_new_tokens = 8;
  c.min_new_tokens = 8;
  BatchEngineOptions o;
  o.prefill_step_tokens = 4;
  BatchEngine engine(*m, nullptr, o);
  const int first = engine.submit({ids_of(5, 1), c, {}, {}});
  engine.step();
  int tokens = 0;
  const int joining = engine.submit({ids_of(10, 2), c, {}, [&](int, int, const std::string&) { ++tokens; }});
  int steps = 0;
  while (tokens == 0) {
    engine.step();
    // (The step queued before the submission runs first.) Then the prefilling request holds its row.
    if (++steps > 1) {
      EXPECT_EQ(engine.running_rows(), 2) << steps;
    }
  }
  EXPECT_EQ(steps, 4);  // the queued step, then 4 + 4 + 2 prompt tokens
  std::map<int, GenerationResult> results;
  while (engine.busy())
    for (int id : engine.step()) results.emplace(id, *engine.take_result(id));
  EXPECT_EQ(results.at(first).sequences[0].token_ids, generate(*m, nullptr, ids_of(5, 1), c).sequences[0].token_ids);
  EXPECT_EQ(results.at(joining).sequences[0].token_ids, generate(*m, nullptr, ids_of(10, 2), c).sequences[0].token_ids);
}

// The measured budget (prefill_step_tokens < 0) or a fixed one: long prompts join in parts with their solo
// run's tokens, and a request cancelled halfway through its prefill ends with no tokens while the others go on.
TEST(BatchEngine, SplitPrefillsKeepSoloTokensAndCancelMidPrompt) {
  auto m = tiny();
  GenerationConfig c;
  c.max_new_tokens = 6;
  c.min_new_tokens = 6;
  GenerationConfig long_run = c;
  long_run.max_new_tokens = long_run.min_new_tokens = 60;
  for (int budget : {-1, 7}) {
    BatchEngineOptions o;
    o.prefill_step_tokens = budget;
    BatchEngine engine(*m, nullptr, o);
    std::map<int, GenerationResult> results;
    auto step = [&] {
      for (int id : engine.step()) results.emplace(id, *engine.take_result(id));
    };
    // The first request decodes all along (an idle engine prefills whole prompts).
    std::vector<int> ids{engine.submit({ids_of(3, 1), long_run, {}, {}})};
    step();
    step();
    for (int i = 0; i < 3; ++i) ids.push_back(engine.submit({ids_of(40 + i, 5 + i), c, {}, {}}));
    step();
    step();
    const int cancelled = engine.submit({ids_of(60, 9), c, {}, {}});
    bool sent = false;
    while (engine.busy()) {
      step();
      // With 7 tokens a step the 60-token prompt is still going in when it leaves the queue: cancel it then.
      if (budget > 0 && !sent && engine.queued() == 0) {
        engine.cancel(cancelled);
        results.emplace(cancelled, *engine.take_result(cancelled));
        sent = true;
      }
    }
    if (budget > 0) {
      ASSERT_TRUE(sent);
      EXPECT_EQ(results.at(cancelled).sequences[0].finish_reason, FinishReason::Cancelled);
      EXPECT_TRUE(results.at(cancelled).sequences[0].token_ids.empty());
    } else {
      EXPECT_EQ(results.at(cancelled).sequences[0].token_ids,
                generate(*m, nullptr, ids_of(60, 9), c).sequences[0].token_ids);
    }
    EXPECT_EQ(results.at(ids[0]).sequences[0].token_ids,
              generate(*m, nullptr, ids_of(3, 1), long_run).sequences[0].token_ids)
        << budget;
    for (int i = 0; i < 3; ++i)
      EXPECT_EQ(results.at(ids[1 + i]).sequences[0].token_ids,
                generate(*m, nullptr, ids_of(40 + i, 5 + i), c).sequences[0].token_ids)
          << budget << " " << i;
  }
}

TEST(PrefillPacer, BudgetSteersAPartToOneDecodeStep) {
  PrefillPacer p;
  EXPECT_EQ(p.budget(), PrefillPacer::kMinTokens);
  p.prefilled(16, 0.001);  // no decode step measured yet: nothing to steer by
  EXPECT_EQ(p.budget(), 16);
  p.decoded(0.010);
  p.prefilled(16, 0.004);  // a part of 4 ms against 10 ms steps: at most twofold up
  EXPECT_EQ(p.budget(), 32);
  p.prefilled(20, 0.001);  // a prompt's shorter last part does not steer
  EXPECT_EQ(p.budget(), 32);
  p.prefilled(32, 0.008);  // 8 ms: 32 * 10 / 8
  EXPECT_EQ(p.budget(), 40);
  p.prefilled(40, 0.100);  // far too long: at most twofold down
  EXPECT_EQ(p.budget(), 20);
  p.prefilled(20, 0.100);  // and never under the floor
  EXPECT_EQ(p.budget(), PrefillPacer::kMinTokens);
  p.prefilled(16, -1.0);  // ignored
  p.decoded(-1.0);        // ignored
  EXPECT_EQ(p.budget(), PrefillPacer::kMinTokens);
}

}  // namespace
}  // namespace mlxgp::testing
