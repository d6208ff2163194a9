// Distributed runs from Python (docs/distributed.md): joining the launcher's group with a bounded wait,
// and tensor-parallel sharding of a loaded model. Data parallelism is TrainingConfig(group=...).
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>

#include <mlx/mlx.h>

#include "bindings.h"
#include "mlxgp/distributed.h"

namespace mx = mlx::core;

namespace mlxgp::py {

void bind_distributed(nb::module_& m) {
  m.def(
      "distributed_init",
      [](std::optional<double> timeout) {
        nb::gil_scoped_release release;
        return distributed_init(timeout ? *timeout : -1.0);
      },
      nb::arg("timeout").none() = nb::none(),
      "the group mlx.launch / mpirun started (size 1 without a launcher); [distributed] error after `timeout` "
      "seconds (default MLXGP_DISTRIBUTED_TIMEOUT or 60) if a rank cannot be reached");
  m.def(
      "shard_model",
      [](PyModel& p, const mx::distributed::Group& group) {
        nb::gil_scoped_release release;
        shard_model(*p.model, group);
      },
      nb::arg("model"), nb::arg("group"),
      "tensor parallelism: keep this rank's share of every layer (heads, MLP features); every rank then "
      "computes the same logits");
}

}  // namespace mlxgp::py
