#include "distributed_run.h"

#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <unistd.h>

namespace mlxgp::cli {

namespace {

int error_fd = STDERR_FILENO;
bool output_rank = true;

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

void check_same_run(const DistGroup& group, Model& model, const Args& args, const std::vector<std::string>& per_machine,
                    const std::string& inputs) {
  if (group.size() == 1) return;
  check_same_on_all_ranks(group, "the model, options or inputs",
                          model_fingerprint(model) + "\n" + args.canonical(per_machine) + "\n" + inputs,
                          model_checksum(model));
}

std::unique_ptr<PeerWatch> start_tensor_parallel(const DistGroup& group, Model& model, const Args& args,
                                                 const std::vector<std::string>& per_machine,
                                                 const std::string& inputs) {
  check_same_run(group, model, args, per_machine, inputs);
  shard_model(model, group);
  return watch_peers(group);
}

std::unique_ptr<PeerWatch> watch_peers(const DistGroup& group) {
  if (group.size() == 1) return nullptr;
  return std::make_unique<PeerWatch>(group, [] {
    print_error_line(
        "[distributed] lost another rank (it exited, was killed or the network failed): its connection closed "
        "and this rank's step did not finish");
    _exit(1);
  });
}

}  // namespace mlxgp::cli
