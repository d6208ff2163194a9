// mlxgp: command-line entry point. Dispatches to subcommands and maps errors to exit codes:
// 2 for invalid input ([component] message on one stderr line), 1 for runtime failures.
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include <unistd.h>

#include <mlx/device.h>

#include "stream_out.h"
#include "commands.h"
#include "distributed_run.h"
#include "mlxgp/error.h"
#include "mlxgp/paths.h"

namespace {

struct Command {
  const char* name;
  int (*run)(const std::vector<std::string>&);
  const char* help;
};

const Command kCommands[] = {
    {"generate", mlxgp::cli::run_generate, "generate text from a prompt or token ids"},
    {"chat", mlxgp::cli::run_chat, "interactive multi-turn chat (stdin lines -> streamed replies, KV cache kept)"},
    {"serve", mlxgp::cli::run_serve, "OpenAI-compatible HTTP server with continuous batching (docs/server.md)"},
    {"cache-prompt", mlxgp::cli::run_cache_prompt, "save the KV cache of a prompt prefix (generate --prompt-cache)"},
    {"logits", mlxgp::cli::run_logits, "dump prefill + cached decode logits for token ids (parity checks)"},
    {"train", mlxgp::cli::run_train, "train a model: full fine-tuning, LoRA or a soft prompt"},
    {"steer", mlxgp::cli::run_steer, "steering vectors: `steer extract` (contrastive activation addition)"},
    {"convert", mlxgp::cli::run_convert, "convert an HF checkpoint folder to an MLX folder (optionally quantized)"},
    {"tokenize", mlxgp::cli::run_tokenize, "print the token ids of a text"},
    {"detokenize", mlxgp::cli::run_detokenize, "print the text of token ids"},
    {"chat-template", mlxgp::cli::run_chat_template, "render a chat template for conversations (parity checks)"},
    {"process-logits", mlxgp::cli::run_process_logits, "run logits processors on given scores (parity checks)"},
    {"loss", mlxgp::cli::run_loss, "cross-entropy of saved logits and targets (parity checks)"},
};

void print_usage() {
  std::cout << "usage: mlxgp <command> [options]   (mlxgp " << mlxgp::version() << ")\n\ncommands:\n";
  for (auto& c : kCommands) std::cout << "  " << c.name << "\t" << c.help << "\n";
  std::cout << "\n'mlxgp <command> --help' lists a command's options.\n";
}

namespace mx = mlx::core;

// MLXGP_DEVICE=cpu|gpu picks MLX's default device; a CUDA (or Metal) build of MLX otherwise defaults
// to its GPU. Read once, before any array exists.
void apply_device_env() {
  const char* env = std::getenv("MLXGP_DEVICE");
  if (!env || !*env) return;
  const std::string d(env);
  if (d == "cpu") {
    mx::set_default_device(mx::Device::cpu);
  } else if (d == "gpu") {
    if (!mx::is_available(mx::Device::gpu))
      throw mlxgp::Error("device", "MLXGP_DEVICE=gpu but this MLX build has no GPU backend (install mlx[cuda13])");
    mx::set_default_device(mx::Device::gpu);
  } else {
    throw mlxgp::Error("device", "MLXGP_DEVICE must be 'cpu' or 'gpu', got '" + d + "'");
  }
}

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

// MLX's distributed backends report a lost peer as "[ring] ...", "[mpi] ...", "[nccl] ..." or "[jaccl] ...".
bool communication_error(const std::string& what) {
  for (const char* p : {"[ring]", "[mpi]", "[nccl]", "[jaccl]"})
    if (what.rfind(p, 0) == 0) return true;
  return false;
}

// OpenBLAS (MLX's BLAS on Linux) keeps its worker threads spinning on sched_yield for 2^28 cycles (about
// 0.1 s) after every sgemm, so after each prefill they share the cores with the decode steps' kernels
// (7% of the CPU in a batch-8 profile on 2 cores). It reads OPENBLAS_THREAD_TIMEOUT once, when it loads,
// before main: the process runs itself again, once, with 2^16 cycles (about 20 us) set. A value in the
// environment is kept; if the exec fails we run on as we are.
void keep_blas_threads_from_spinning(char** argv) {
#if defined(__linux__)
  if (std::getenv("OPENBLAS_THREAD_TIMEOUT")) return;
  ::setenv("OPENBLAS_THREAD_TIMEOUT", "16", /*overwrite=*/1);
  ::execv("/proc/self/exe", argv);
#else
  (void)argv;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  keep_blas_threads_from_spinning(argv);
  // float32 means float32, as in PyTorch's default: MLX's CUDA backend otherwise runs fp32 matmuls as
  // TF32 (SmolLM2 logits moved 0.057 against transformers on an H200). MLX reads this once, at its
  // first fp32 matmul; MLX_ENABLE_TF32=1 in the environment opts back in. No effect on the CPU.
  ::setenv("MLX_ENABLE_TF32", "0", /*overwrite=*/0);
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
  try {
    apply_device_env();
  } catch (const mlxgp::Error& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }
  if (!std::strcmp(argv[1], "--version")) {
    std::cout << mlxgp::version() << "\n";
    return 0;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  for (auto& c : kCommands) {
    if (std::string(argv[1]) != c.name) continue;
    // also reaches the terminal from a quiet rank of a distributed run; after a streamed text's open line
    auto print_error_line = [](const std::string& line) {
      mlxgp::cli::end_streamed_line();
      mlxgp::cli::print_error_line(line);
    };
    try {
      return c.run(args);
    } catch (const mlxgp::Error& e) {
      print_error_line(one_line(e.what()));
      return e.kind() == mlxgp::ErrorKind::InvalidInput ? 2 : 1;
    } catch (const std::invalid_argument& e) {
      // MLX reports bad shapes/arguments this way, already prefixed "[op]".
      print_error_line(one_line(e.what()));
      return 2;
    } catch (const std::exception& e) {
      print_error_line(communication_error(e.what()) ? "[distributed] lost another rank (it exited, was killed or the "
                                                       "network failed): " +
                                                           one_line(e.what())
                                                     : "[mlxgp] " + one_line(e.what()));
      return 1;
    }
  }
  std::cerr << "[cli] unknown command '" << argv[1] << "' (see mlxgp --help)\n";
  return 2;
}
