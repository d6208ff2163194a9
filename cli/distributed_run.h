// The CLI's face of a distributed run (--tensor-parallel, --distributed; docs/distributed.md): join the
// launcher's group, check every rank runs the same thing, and let rank 0 alone print and write files.
#pragma once

#include <memory>
#include <string>

#include "args.h"
#include "mlxgp/distributed.h"
#include "mlxgp/generation_config.h"
#include "mlxgp/generator.h"
#include "mlxgp/loader.h"
#include "mlxgp/model.h"
#include "mlxgp/peer_watch.h"

namespace mlxgp::cli {

// Joins the group mlx.launch / mpirun started (a group of size 1 without a launcher, with a notice).
// From here on, ranks other than 0 print nothing but their error lines.
DistGroup join_distributed_run(const std::string& flag);

// False on ranks other than 0 of a joined run: they write no output files.
bool is_output_rank();

// An error line on the real stderr, also on a quiet rank (main's error handler).
void print_error_line(const std::string& line);

// Fails on every rank unless all ranks loaded the same model (structure, weights, tokenizer and
// generation_config.json) and were given the same options (`args`, except the per-machine paths in
// `per_machine`; an option naming a file compares the file's contents, not its path) and inputs (`inputs`:
// prompt ids, resolved generation settings, a dataset digest).
void check_same_run(const DistGroup& group, const LoadedModel& loaded, const Args& args,
                    const std::vector<std::string>& per_machine, const std::string& inputs);

// The settings a generation runs with (`config` under the model's defaults) as text for check_same_run's
// inputs; a draft model path stands for its contents.
std::string resolved_settings(GenerationConfig config, const LoadedModel& loaded);

// --tensor-parallel: check_same_run, then shard the model over `group`, then watch_peers (returned; keep it
// over the work that needs the other ranks).
std::unique_ptr<PeerWatch> start_tensor_parallel(const DistGroup& group, const LoadedModel& loaded, const Args& args,
                                                 const std::vector<std::string>& per_machine,
                                                 const std::string& inputs);

// Watches the other ranks over work that needs them (PeerWatch): a dead rank ends this one with a
// [distributed] line and exit code 1 instead of a hang. Null on a group of size 1.
std::unique_ptr<PeerWatch> watch_peers(const DistGroup& group);

}  // namespace mlxgp::cli
