#include "distributed_run.h"

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace mlxgp::cli {

namespace {

int error_fd = STDERR_FILENO;
bool output_rank = true;

// A value naming a file or folder stands for its contents, wherever it lies on each machine.
std::string content_text(const std::string& value) {
  std::error_code ec;
  if (value.empty() || !std::filesystem::exists(value, ec)) return value;
  char hex[24];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(file_content_hash(value)));
  return std::string("contents ") + hex;
}

}  // namespace

DistGroup join_distributed_run(const std::string& flag) {
  if (!distributed_launched())
    std::fprintf(stderr, "[distributed] %s without a launcher (mlx.launch, mpirun): running as a single process\n",
                 flag.c_str());
  // A peer that dies closes its sockets: writing to them must fail (MLX then throws), not kill this rank
  // with SIGPIPE before it can say what happened.
  std::signal(SIGPIPE, SIG_IGN);
  auto group = distributed_init();
  if (group.rank() != 0) {
    // Rank 0 prints the result; the others keep a copy of stderr for their errors only.
    std::fflush(stdout);
    std::fflush(stderr);
    error_fd = dup(STDERR_FILENO);
    const int null_fd = open("/dev/null", O_WRONLY);
    if (null_fd >= 0) {
      dup2(null_fd, STDOUT_FILENO);
      dup2(null_fd, STDERR_FILENO);
      close(null_fd);
    }
    output_rank = false;
  }
  return group;
}

bool is_output_rank() { return output_rank; }

void print_error_line(const std::string& line) {
  std::fflush(stderr);
  const std::string text = line + "\n";
  if (write(error_fd, text.data(), text.size()) < 0) {
    // Nothing else can report it.
  }
}

void check_same_run(const DistGroup& group, const LoadedModel& loaded, const Args& args,
                    const std::vector<std::string>& per_machine, const std::string& inputs) {
  if (group.size() == 1) return;
  // An option naming a file or folder (--config, --lora, --steer, --soft-prompt, --draft-model, ...) means
  // its contents.
  std::string text = model_fingerprint(*loaded.model) + "\n" + args.canonical(per_machine, content_text) + "\n";
  // What the model's own folder adds: its generation_config.json (parsed: its settings, not its spacing)
  // and its tokenizer.
  if (!loaded.generation_config_json.empty()) {
    try {
      text += nlohmann::json::parse(loaded.generation_config_json).dump() + "\n";
    } catch (const std::exception&) {
      text += loaded.generation_config_json + "\n";
    }
  }
  if (loaded.tokenizer) text += "tokenizer " + std::to_string(tokenizer_hash(*loaded.tokenizer)) + "\n";
  check_same_on_all_ranks(group, "the model, options or inputs", text + inputs, model_weights_hash(*loaded.model));
}

std::string resolved_settings(GenerationConfig config, const LoadedModel& loaded) {
  config = with_model_defaults(config, loaded.model->config(), loaded.tokenizer.get());
  if (config.draft_model) config.draft_model = content_text(*config.draft_model);
  return to_json(config).dump();
}

std::unique_ptr<PeerWatch> start_tensor_parallel(const DistGroup& group, const LoadedModel& loaded, const Args& args,
                                                 const std::vector<std::string>& per_machine,
                                                 const std::string& inputs) {
  check_same_run(group, loaded, args, per_machine, inputs);
  shard_model(*loaded.model, group);
  return watch_peers(group);
}

std::unique_ptr<PeerWatch> watch_peers(const DistGroup& group) {
  if (group.size() == 1) return nullptr;
  return std::make_unique<PeerWatch>(group, [](const std::string& why) {
    print_error_line("[distributed] lost another rank (it exited, was killed or the network failed): " + why);
    _exit(1);
  });
}

}  // namespace mlxgp::cli
