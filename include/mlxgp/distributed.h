// Running across processes and machines on MLX's own distributed layer (mlx/distributed: ring over TCP,
// MPI, NCCL on CUDA builds), started by the launchers MLX users already have (`mlx.launch`, `mpirun`).
// Data-parallel training sums gradients with all_sum (TrainingConfig::group); tensor-parallel
// generation shards each layer's attention and MLP across the ranks (shard_model). docs/distributed.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <mlx/distributed/distributed.h>

#include "mlxgp/model.h"
#include "mlxgp/tokenizer.h"

namespace mlxgp {

using DistGroup = mlx::core::distributed::Group;

// Whether a launcher's environment is present (mlx.launch's MLX_RANK + MLX_HOSTFILE or the jaccl/NCCL
// variables, or MPI's OMPI_COMM_WORLD_SIZE / PMI_SIZE).
bool distributed_launched();

// MLXGP_DISTRIBUTED_TIMEOUT in seconds (default 60): how long a rank waits to reach the others at start,
// and for a sign of life from a peer later (PeerWatch). Throws [distributed] when it is not a number in
// (0, 86400].
double distributed_timeout();

// The group of every process the launcher started. Without a launcher: a group of size 1, on which
// every collective is skipped, so the same code runs alone at no cost. Connecting is bounded by
// `timeout_s` (< 0: MLXGP_DISTRIBUTED_TIMEOUT seconds, default 60): a rank that cannot reach the others
// fails with [distributed] instead of waiting for ever. Ranks that share a machine (mlx.launch -n N on one
// host) each get an equal share of its cores for mlxgp's kernels and OpenBLAS, unless MLXGP_NUM_THREADS /
// OPENBLAS_NUM_THREADS say otherwise. Throws [distributed].
DistGroup distributed_init(double timeout_s = -1);

// Fails with [distributed] on every rank unless all ranks pass the same `fingerprint` and the same
// `weights_hash`, both compared exactly: mismatched models, settings or data are found at start, not as
// garbage later. `what` names the thing compared in the message. A no-op on a group of size 1.
void check_same_on_all_ranks(const DistGroup& group, const std::string& what, const std::string& fingerprint,
                             uint64_t weights_hash = 0);

// A model's structure (config, parameter names, shapes and dtypes) as text, for check_same_on_all_ranks.
std::string model_fingerprint(Model& model);
// An exact 64-bit hash of every tensor's name, dtype, shape and bytes, in name order: any change to any
// value (a sign, two swapped rows) changes it. Reads every byte once (one tensor evaluated at a time).
uint64_t weights_hash(const WeightMap& weights);
uint64_t model_weights_hash(Model& model);  // weights_hash(model.parameters())
// The same kind of hash of a file's bytes, or of a folder's files (relative names and bytes, recursively):
// what a file option means, wherever the file lies. Throws [distributed] when it cannot be read.
uint64_t file_content_hash(const std::string& path);

// The same kind of hash of what a tokenizer does: every token's text and specialness, the special token
// ids and the chat templates. Ranks that encode or decode for themselves (a server's other ranks, stop
// strings) must agree on it.
uint64_t tokenizer_hash(const Tokenizer& tokenizer);

// A fresh random 64-bit seed (std::random_device).
uint64_t fresh_random_seed();
// `n` seeds that every rank of `group` agrees on: rank 0's fresh_random_seed() draws, sent to the others
// (one collective; none on a group of size 1).
std::vector<uint64_t> agreed_random_seeds(const DistGroup& group, int n);

// Rank 0's `values` on every rank (the other ranks pass arrays of the same names, shapes and dtypes, e.g.
// their own copies): a checkpoint read by rank 0 alone reaches every rank.
WeightMap broadcast_from_rank0(const DistGroup& group, const WeightMap& values);

// Rank 0's `text` on every rank (the others pass anything): how `mlxgp serve --tensor-parallel` hands each
// scheduler step's new requests and cancellations to the ranks that follow rank 0.
std::string broadcast_text_from_rank0(const DistGroup& group, const std::string& text);

// Tensor parallelism (Megatron-style, as mlx-lm's shard()): every layer's q/k/v and gate/up projections
// keep this rank's share of heads / intermediate features (rows), o and down keep the matching input
// columns and all_sum their output; embeddings, norms and the output head stay whole. Heads are split
// by key/value groups, as evenly as they go (9 heads in 3 KV groups over 2 ranks: 6 + 3), so KV caches
// are sharded alike. Every rank computes the same logits, so every rank decodes the same tokens.
// LoRA adapters already in the model are sharded with their linears. Refuses (throws [distributed])
// fewer KV heads than ranks, a split that would cut a quantization block, and a model that is no
// DecoderModel. A no-op on a group of size 1.
void shard_model(Model& model, const DistGroup& group);

}  // namespace mlxgp
