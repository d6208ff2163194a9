// `mlxgp train`: full, LoRA or soft-prompt training with progress, validation, atomic checkpoints and
// exact resume; and the hidden `mlxgp loss` (xent_loss on saved arrays, for the parity tests).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <unistd.h>

#include <mlx/mlx.h>
#include <nlohmann/json.hpp>

#include "args.h"
#include "commands.h"
#include "distributed_run.h"
#include "mlxgp/checkpoint.h"
#include "mlxgp/checkpoint_names.h"
#include "mlxgp/dataset.h"
#include "mlxgp/distributed.h"
#include "mlxgp/error.h"
#include "mlxgp/loader.h"
#include "mlxgp/lora.h"
#include "mlxgp/safetensors_io.h"
#include "mlxgp/steering.h"
#include "mlxgp/training.h"

namespace mx = mlx::core;

namespace mlxgp::cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const char* kSoftPromptKey = "_soft_prompt";

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    auto end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

LossScaleConfig parse_loss_scale(const std::string& s) {
  LossScaleConfig c;
  if (s == "none") return c;
  if (s == "dynamic") {
    c.kind = LossScaleConfig::Kind::Dynamic;
    return c;
  }
  try {
    size_t used = 0;
    c.scale = std::stod(s, &used);
    if (used == s.size() && c.scale > 0) {
      c.kind = LossScaleConfig::Kind::Static;
      return c;
    }
  } catch (const std::exception&) {
  }
  fail("cli", "--loss-scale expects none, dynamic or a positive number, got '" + s + "'");
}

std::string hms(double seconds) {
  int s = static_cast<int>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02d:%02d:%02d", s / 3600, s / 60 % 60, s % 60);
  return buf;
}

// The examples for global positions [start, start + n): epoch e uses its own seeded order. Rank r of a
// data-parallel run takes positions start + r, start + r + ranks, ... (mlx-lm's iterate_batches).
Batch batch_at(const std::vector<Example>& ex, uint64_t seed, bool shuffle, size_t start, int n, int pad, int rank = 0,
               int ranks = 1) {
  std::vector<int> order;
  int cached_epoch = -1;
  std::vector<int> epoch;
  for (int i = rank; i < n; i += ranks) {
    size_t g = start + i;
    int e = static_cast<int>(g / ex.size());
    if (e != cached_epoch) {
      epoch = epoch_order(ex.size(), seed, e, shuffle);
      cached_epoch = e;
    }
    order.push_back(epoch[g % ex.size()]);
  }
  return make_batch(ex, order, 0, static_cast<int>(order.size()), pad);
}

// A digest of the examples' tokens, for the ranks' start-up comparison.
std::string dataset_digest(const std::vector<Example>& ex) {
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&](uint64_t v) {
    h ^= v;
    h *= 1099511628211ULL;
  };
  for (auto& e : ex) {
    mix(e.ids.size());
    for (size_t i = 0; i < e.ids.size(); ++i) mix(static_cast<uint64_t>(e.ids[i]) * 2 + e.target[i]);
  }
  return std::to_string(ex.size()) + ":" + std::to_string(h);
}

}  // namespace

int run_train(const std::vector<std::string>& argv) {
  Args args("train", "train a model (full, LoRA or soft prompt) on a .txt or .jsonl dataset");
  args.option("model", "model folder, .gguf file or 'default' (default: default)")
      .option("data",
              "training data: .txt (packed into --seq-len blocks) or .jsonl (text | prompt+completion | input_ids)")
      .option("valid", "validation data (same formats)")
      .option("mode", "full | lora | soft-prompt (default: lora)")
      .option("steps", "optimizer steps (default: 100)")
      .option("batch-size", "examples per micro-batch (default: 4)")
      .option("grad-accum", "micro-batches per optimizer step (default: 1)")
      .option("seq-len", "tokens per example (default: 256)")
      .option("lr", "peak learning rate (default: 1e-4; soft prompts often want 1e-2)")
      .option("optimizer", "adamw | sgd (default: adamw)")
      .option("weight-decay", "decoupled weight decay (default: 0.01 for adamw, 0 for sgd)")
      .option("beta1", "AdamW beta1 (default: 0.9)")
      .option("beta2", "AdamW beta2 (default: 0.999)")
      .option("eps", "AdamW eps (default: 1e-8)")
      .option("momentum", "SGD momentum (default: 0)")
      .option("schedule", "constant | cosine | linear (default: constant)")
      .option("warmup", "linear warm-up steps (default: 0)")
      .option("max-grad-norm", "clip gradients to this global norm (default: off)")
      .option("label-smoothing", "cross-entropy label smoothing (default: 0)")
      .option("dtype", "compute dtype float32 | bfloat16 | float16 (default: float32); masters stay float32")
      .option("loss-scale", "none | dynamic | a static value (default: dynamic for float16, else none)")
      .option("lora-rank", "LoRA rank (default: 8)")
      .option("lora-alpha", "LoRA alpha (default: 16)")
      .option("lora-dropout", "LoRA dropout (default: 0)")
      .option("lora-targets", "comma-separated linear names (default: q_proj,v_proj)")
      .option("soft-prompt-tokens", "virtual tokens of a soft prompt (default: 8)")
      .option("soft-prompt-init", "text whose token embeddings start the soft prompt (default: random)")
      .option("seed", "seed for data order, LoRA init and dropout (default: 0)")
      .option("no-shuffle", "keep the data order of the file", false)
      .option("eval-every", "validation loss every N steps (default: 50 when --valid)")
      .option("save-every", "checkpoint every N steps (default: at the end only)")
      .option("out", "output directory (checkpoints, final weights/adapters/soft prompt)")
      .option("resume", "continue from the latest checkpoint in this directory")
      .option("log-json", "append one JSON line per step to this file")
      .option("dump-grads", "write the first step's gradients to this .safetensors file (parity tests)")
      .option("inject-overflow-at", "make step N's gradients infinite (tests loss scaling)")
      .option("distributed",
              "data parallel over the ranks of `mlx.launch -n N ... -- mlxgp train ...` (docs/distributed.md): "
              "--batch-size is the global batch, split over the ranks; rank 0 prints and writes",
              false);
  if (!args.parse(argv)) return 0;
  const std::string out_dir = args.require("out"), data_path = args.require("data");
  const std::string mode = args.get("mode").value_or("lora");
  if (mode != "full" && mode != "lora" && mode != "soft-prompt")
    fail("cli", "--mode must be full, lora or soft-prompt, got '" + mode + "'");
  // An option that does not apply to the chosen mode or optimizer is refused, never silently ignored.
  const std::string opt_name = args.get("optimizer").value_or("adamw");
  auto only_for = [&](bool applies, std::initializer_list<const char*> names, const std::string& what) {
    for (const char* name : names)
      if (!applies && args.has(name)) fail("cli", std::string("--") + name + " applies only to " + what);
  };
  only_for(mode == "lora", {"lora-rank", "lora-alpha", "lora-dropout", "lora-targets"}, "--mode lora");
  only_for(mode == "soft-prompt", {"soft-prompt-tokens", "soft-prompt-init"}, "--mode soft-prompt");
  only_for(opt_name == "adamw", {"beta1", "beta2", "eps"}, "--optimizer adamw");
  only_for(opt_name == "sgd", {"momentum"}, "--optimizer sgd");
  only_for(args.has("valid"), {"eval-every"}, "runs with --valid");
  for (const char* name : {"eval-every", "save-every", "inject-overflow-at"})
    if (args.get_int32(name).value_or(0) < 0) fail("cli", std::string("--") + name + " must be >= 0");
  const int steps = args.get_int32("steps").value_or(100);
  const int batch_size = args.get_int32("batch-size").value_or(4);
  const int accum = args.get_int32("grad-accum").value_or(1);
  const int seq_len = args.get_int32("seq-len").value_or(256);
  if (steps < 1 || batch_size < 1 || accum < 1) fail("cli", "--steps, --batch-size and --grad-accum must be >= 1");
  const uint64_t seed = static_cast<uint64_t>(args.get_int("seed").value_or(0));
  std::optional<DistGroup> group;
  if (args.has("distributed")) group = join_distributed_run("--distributed");
  const int rank = group ? group->rank() : 0, ranks = group ? group->size() : 1;
  if (batch_size % ranks != 0)
    fail("cli", "--batch-size " + std::to_string(batch_size) + " must be a multiple of the number of ranks (" +
                    std::to_string(ranks) + "): it is the global batch, split over them");
  const bool writer = is_output_rank();  // rank 0 alone prints progress and writes files
  const bool shuffle = !args.has("no-shuffle");

  TrainingConfig tc;
  tc.dtype = parse_dtype(args.get("dtype").value_or("float32"));
  tc.label_smoothing = args.get_double("label-smoothing").value_or(0.0);
  tc.max_grad_norm = args.get_double("max-grad-norm").value_or(0.0);
  tc.loss_scale = parse_loss_scale(args.get("loss-scale").value_or(tc.dtype == mx::float16 ? "dynamic" : "none"));
  tc.inject_overflow_step = args.get_int32("inject-overflow-at").value_or(0);
  tc.group = group;
  LrSchedule schedule;
  schedule.kind = parse_lr_schedule(args.get("schedule").value_or("constant"));
  schedule.lr = args.get_double("lr").value_or(1e-4);
  schedule.warmup_steps = args.get_int32("warmup").value_or(0);
  schedule.total_steps = steps;
  if (!(schedule.lr > 0) || schedule.warmup_steps < 0) fail("cli", "--lr must be > 0 and --warmup >= 0");

  // Full fine-tuning keeps float32 masters of every weight, so the base is loaded in float32 and the
  // trainer casts to the compute dtype; a frozen base (LoRA, soft prompt) is loaded in the compute dtype.
  LoadOptions lo;
  lo.dtype = mode == "full" ? mx::float32 : tc.dtype;
  const std::string model_path = args.get("model").value_or("default");
  auto loaded = load(model_path, lo);
  auto& model = *loaded.model;
  const auto& mc = model.config();
  const std::string fingerprint = model_content_digest(model);  // the base model, before adapters or a soft prompt

  std::vector<std::string> trainable;
  LoraConfig lora;
  if (mode == "full") {
    trainable = full_trainable(model);  // the model is float32 here (lo.dtype)
  } else if (mode == "lora") {
    lora.rank = args.get_int32("lora-rank").value_or(8);
    lora.alpha = args.get_double("lora-alpha").value_or(16.0);
    lora.dropout = args.get_double("lora-dropout").value_or(0.0);
    if (auto t = args.get("lora-targets")) lora.target_modules = split_list(*t);
    lora.seed = seed;
    trainable = add_lora(model, lora);
  } else {
    const int n = args.get_int32("soft-prompt-tokens").value_or(8);
    if (n < 1) fail("cli", "--soft-prompt-tokens must be >= 1");
    mx::array init = mx::zeros({1});
    if (auto text = args.get("soft-prompt-init")) {
      if (!loaded.tokenizer) fail("train", "--soft-prompt-init needs a tokenizer");
      auto ids = loaded.tokenizer->encode(*text, false);
      if (ids.empty()) fail("cli", "--soft-prompt-init text has no tokens");
      std::vector<int> rep(n);
      for (int i = 0; i < n; ++i) rep[i] = ids[i % ids.size()];
      init = mx::reshape(model.embed(mx::array(rep.data(), {1, n}, mx::int32)), {n, mc.hidden_size});
    } else {
      // Random virtual tokens at the scale of real embeddings (their standard deviation).
      auto e = model.embed(mx::reshape(mx::arange(std::min(mc.vocab_size, 4096), mx::int32), {1, -1}));
      auto sd = mx::sqrt(mx::var(mx::astype(e, mx::float32)));
      init = mx::multiply(mx::random::normal({n, mc.hidden_size}, mx::float32, mx::random::key(seed)), sd);
    }
    model[kSoftPromptKey] = mx::astype(init, mx::float32);
    add_hook(model, std::make_shared<SoftPromptHook>(n, kSoftPromptKey));
    trainable = {kSoftPromptKey};
  }

  DatasetOptions dopt;
  dopt.seq_len = seq_len;
  dopt.vocab_size = mc.vocab_size;
  dopt.max_context = mc.max_position_embeddings;
  auto train_set = load_dataset(data_path, loaded.tokenizer.get(), dopt);
  std::vector<Example> valid_set;
  if (auto v = args.get("valid")) valid_set = load_dataset(*v, loaded.tokenizer.get(), dopt);
  const int pad = loaded.tokenizer && loaded.tokenizer->pad_token_id() ? *loaded.tokenizer->pad_token_id() : 0;

  std::unique_ptr<Optimizer> opt;
  if (opt_name == "adamw") {
    AdamWOptions o;
    o.beta1 = args.get_double("beta1").value_or(o.beta1);
    o.beta2 = args.get_double("beta2").value_or(o.beta2);
    o.eps = args.get_double("eps").value_or(o.eps);
    o.weight_decay = args.get_double("weight-decay").value_or(o.weight_decay);
    opt = make_adamw(o);
  } else if (opt_name == "sgd") {
    SgdOptions o;
    o.momentum = args.get_double("momentum").value_or(0.0);
    o.weight_decay = args.get_double("weight-decay").value_or(0.0);
    opt = make_sgd(o);
  } else {
    fail("cli", "--optimizer must be adamw or sgd, got '" + opt_name + "'");
  }
  Trainer trainer(model, trainable, std::move(opt), tc, schedule);
  std::unique_ptr<PeerWatch> watch;
  if (group) {
    check_same_run(*group, loaded, args, {"model", "data", "valid", "out", "resume", "log-json", "dump-grads"},
                   dataset_digest(train_set) + " " + dataset_digest(valid_set));
    watch = watch_peers(*group);
  }

  // What must match for a checkpoint to be resumed by this run.
  // The model by content (the same weights under another path spelling resume; other weights at the same
  // path do not), and the LoRA settings that change the math without changing a tensor's shape.
  json identity = {{"model", fingerprint},
                   {"dtype", tc.dtype == mx::float32    ? "float32"
                             : tc.dtype == mx::bfloat16 ? "bfloat16"
                                                        : "float16"},
                   {"mode", mode},
                   {"optimizer", opt_name},
                   {"trainable", trainable.size()}};
  if (mode == "lora")
    identity["lora"] = {
        {"rank", lora.rank}, {"alpha", lora.alpha}, {"dropout", lora.dropout}, {"targets", lora.target_modules}};
  int start_step = 0;
  if (auto r = args.get("resume")) {
    auto ck = load_checkpoint(*r);
    check_resume_identity(ck, identity);
    auto it = ck.files.find("trainer_state");
    if (it == ck.files.end()) fail("train", "checkpoint " + ck.path + " has no trainer_state.safetensors");
    trainer.load_state(it->second, ck.step);
    start_step = ck.step;
    std::fprintf(stderr, "[train] resumed from %s at step %d\n", ck.path.c_str(), start_step);
    const int saved_ranks = ck.meta.value("world_size", 1);
    if (saved_ranks != ranks)
      std::fprintf(stderr,
                   "[train] the checkpoint was written by a run on %d rank(s) and this run has %d: the global batch "
                   "is the same, so training continues on the same data (float sums may differ in the last bits)\n",
                   saved_ranks, ranks);
    // Every rank reads the checkpoint from its own --resume folder (shared or copied, docs/distributed.md):
    // they must all have resumed the same state.
    if (group)
      check_same_on_all_ranks(*group, "the resumed checkpoints", "step " + std::to_string(start_step),
                              weights_hash(trainer.state()));
  }
  if (start_step > steps)
    fail("train", "the checkpoint is already at step " + std::to_string(start_step) + ", beyond --steps " +
                      std::to_string(steps));
  // Leftovers of a run killed mid-save (temporary checkpoint folders, half-written weights) are never
  // read; remove them so they do not pile up.
  if (int n = writer ? remove_stale_checkpoint_temps(out_dir) : 0)
    std::fprintf(stderr, "[train] removed %d temporary file(s) left by an interrupted run in %s\n", n, out_dir.c_str());

  // The output folder is made (and checked writable) before any step runs: finding it unusable only when
  // the weights are written would lose the whole run.
  if (writer) {
    std::error_code ec;
    fs::create_directories(out_dir, ec);
    if (ec || !fs::is_directory(out_dir)) fail("train", "cannot create --out " + out_dir + ": " + ec.message());
    if (::access(out_dir.c_str(), W_OK) != 0) fail("train", "cannot write into --out " + out_dir);
  }
  std::ofstream log;
  const std::string log_path = args.get("log-json").value_or("");
  if (!log_path.empty() && writer) {
    log.open(log_path, std::ios::app);
    if (!log) fail("cli", "cannot write --log-json file '" + log_path + "'");
  }
  const int eval_every = args.get_int32("eval-every").value_or(valid_set.empty() ? 0 : 50);
  const int save_every = args.get_int32("save-every").value_or(0);
  auto save = [&](int step) {
    json meta = {{"identity", identity}, {"seed", seed}, {"shuffle", shuffle}, {"world_size", ranks}};
    std::unordered_map<std::string, WeightMap> files = {{"trainer_state", trainer.state()}};
    return save_checkpoint(out_dir, step, files, meta);
  };
  auto valid_loss = [&] {
    std::vector<Batch> batches;
    for (size_t i = 0; i < valid_set.size(); i += batch_size) {
      int n = static_cast<int>(std::min<size_t>(batch_size, valid_set.size() - i));
      batches.push_back(batch_at(valid_set, 0, false, i, n, pad));  // Trainer::evaluate splits them over ranks
    }
    return trainer.evaluate(batches);
  };
  if (!valid_set.empty() && start_step == 0)
    std::fprintf(stderr, "[train] step 0 validation loss %.4f\n", valid_loss());

  const bool tty = isatty(STDERR_FILENO);
  auto t0 = std::chrono::steady_clock::now();
  long long tokens_seen = 0;
  for (int step = start_step; step < steps; ++step) {
    std::vector<Batch> micro;
    for (int k = 0; k < accum; ++k)
      micro.push_back(batch_at(train_set, seed, shuffle, (static_cast<size_t>(step) * accum + k) * batch_size,
                               batch_size, pad, rank, ranks));
    auto r = trainer.step(micro);
    if (step == start_step && writer)
      if (auto p = args.get("dump-grads")) {
        WeightMap g(trainer.last_gradients().begin(), trainer.last_gradients().end());
        save_safetensors_atomic(*p, to_checkpoint_names(model.config(), std::move(g), CheckpointLayout::Hf), {},
                                "train");
      }
    tokens_seen += r.n_tokens;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int done = step + 1 - start_step;
    std::optional<double> vloss;
    if (eval_every > 0 && (step + 1) % eval_every == 0 && !valid_set.empty()) vloss = valid_loss();
    std::fprintf(stderr, "%s[train] step %d/%d | loss %.4f | %s%.0f tok/s | lr %.2e | ETA %s%s", tty ? "\r" : "",
                 step + 1, steps, r.loss, r.skipped ? "SKIPPED (overflow) | " : "", tokens_seen / elapsed, r.lr,
                 hms(elapsed / done * (steps - step - 1)).c_str(), tty && !vloss && step + 1 < steps ? "" : "\n");
    if (vloss) std::fprintf(stderr, "[train] step %d validation loss %.4f\n", step + 1, *vloss);
    if (log.is_open()) {
      json line = {{"step", step + 1},
                   {"loss", r.loss},
                   {"n_tokens", r.n_tokens},
                   {"lr", r.lr},
                   {"grad_norm", r.grad_norm},
                   {"skipped", r.skipped},
                   {"loss_scale", r.loss_scale},
                   {"seconds", elapsed},
                   {"peak_memory_bytes", mx::get_peak_memory()}};
      if (vloss) line["valid_loss"] = *vloss;
      if (r.aux_loss) line["aux_loss"] = *r.aux_loss;
      log << line.dump() << "\n" << std::flush;
      if (!log) fail("train", "cannot write --log-json file '" + log_path + "' (disk full?)");
    }
    if (save_every > 0 && (step + 1) % save_every == 0 && step + 1 < steps && writer) save(step + 1);
  }
  // Final artefacts for inference: written before the final checkpoint, so a `latest` at the last step
  // always comes with complete final weights (a run killed while writing them resumes from the
  // previous checkpoint and writes both again).
  auto write_artefact = [&] {
    std::error_code ec;
    fs::create_directories(out_dir, ec);
    if (ec) fail("train", "cannot create " + out_dir + ": " + ec.message());
    std::string artefact;
    if (mode == "lora") {
      artefact = (fs::path(out_dir) / "adapters.safetensors").string();
      save_lora(model, artefact, lora);
    } else if (mode == "soft-prompt") {
      artefact = (fs::path(out_dir) / "soft_prompt.safetensors").string();
      save_safetensors_atomic(artefact, {{"soft_prompt", trainer.masters().at(kSoftPromptKey)}},
                              {{"format", "mlxgp-soft-prompt"}}, "train");
    } else {
      artefact = (fs::path(out_dir) / "model.safetensors").string();
      // The trained weights and the buffers beside them; transformers' names (gpt2's differ from the model's own), so
      // from_pretrained reads the weights.
      WeightMap w = full_model_weights(model, trainer.masters());
      save_safetensors_atomic(artefact, to_checkpoint_names(model.config(), std::move(w), CheckpointLayout::Hf),
                              {{"format", "pt"}}, "train");
    }
    return artefact;
  };
  if (!writer) {
    if (!valid_set.empty() && start_step < steps) valid_loss();  // rank 0's final validation needs every rank
    return 0;
  }
  // Rank 0 writes the final files alone; the other ranks may exit meanwhile (or wait in the final validation).
  if (valid_set.empty() || start_step == steps) watch.reset();
  if (start_step == steps) {
    // Resumed from the final checkpoint (an earlier run was killed while writing its final weights, or is
    // simply re-run): the final weights are written again from it.
    auto artefact = write_artefact();
    std::fprintf(stderr, "[train] the checkpoint is already at step %d: %s rewritten from it\n", steps,
                 artefact.c_str());
    return 0;
  }
  auto artefact = write_artefact();
  auto ck = save(steps);
  if (!valid_set.empty()) std::fprintf(stderr, "[train] final validation loss %.4f\n", valid_loss());
  std::fprintf(stderr, "[train] checkpoint %s, %s written\n", ck.c_str(), artefact.c_str());
  return 0;
}

int run_loss(const std::vector<std::string>& argv) {
  Args args("loss", "cross-entropy of saved logits/targets (parity checks)");
  args.option("in", ".safetensors with logits [N, V] and targets [N]")
      .option("label-smoothing", "(default: 0)")
      .option("ignore-index", "(default: -100)")
      .option("out", "output .safetensors (loss, n_tokens)");
  if (!args.parse(argv)) return 0;
  auto in = load_safetensors_file(args.require("in"));
  auto get = [&](const std::string& k) {
    auto it = in.tensors.find(k);
    if (it == in.tensors.end()) fail("loss", "input has no '" + k + "'");
    return it->second;
  };
  auto r = xent_loss(get("logits"), get("targets"), args.get_double("label-smoothing").value_or(0.0),
                     args.get_int32("ignore-index").value_or(-100));
  save_safetensors_atomic(args.require("out"), {{"loss", r.loss}, {"n_tokens", r.n_tokens}}, {}, "loss");
  return 0;
}

}  // namespace mlxgp::cli
