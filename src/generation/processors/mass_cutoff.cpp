// CPU primitive behind top_p_remove_mask / typical_remove_mask (see mass_cutoff.h).
#include "generation/processors/mass_cutoff.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <vector>

#include <mlx/primitives.h>

#include "kernels/cpu_task.h"
#include "kernels/row_major.h"
#include "generation/processors/row_kernels.h"

namespace mx = mlx::core;

namespace mlxgp::processors {

namespace {

enum class Mode { TopP, Typical };

class MassCutoff : public mx::UnaryPrimitive {
 public:
  MassCutoff(mx::Stream s, Mode mode, float param, int keep)
      : mx::UnaryPrimitive(s), mode_(mode), param_(param), keep_(keep) {}

  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    kernels::enqueue_cpu(stream(), in, out, [&] {
      return [key = mx::array::unsafe_weak_copy(in[0]), probs = mx::array::unsafe_weak_copy(in[1]),
              o = mx::array::unsafe_weak_copy(out), mode = mode_, param = param_, keep = keep_]() mutable {
        kernels::RowMajor<float> k(key), p(probs);
        const int v = key.shape(-1);
        const int rows = static_cast<int>(key.size() / v);
        bool* dst = o.data<bool>();
        std::vector<int> idx;
        idx.reserve(v);
        for (int r = 0; r < rows; ++r) {
          const float* kr = k.ptr + static_cast<size_t>(r) * v;
          const float* pr = p.ptr + static_cast<size_t>(r) * v;
          if (mode == Mode::TopP) top_p_remove_row(kr, pr, dst + static_cast<size_t>(r) * v, v, param, keep, idx);
          else typical_remove_row(kr, pr, dst + static_cast<size_t>(r) * v, v, param, keep, idx);
        }
      };
    });
  }
  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[processors] the mass cutoff primitive runs on the CPU only");
  }
  const char* name() const override { return "MlxgpMassCutoff"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const MassCutoff*>(&other);
    return o && o->mode_ == mode_ && o->param_ == param_ && o->keep_ == keep_;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& in) override { return {in[0].shape()}; }

 private:
  Mode mode_;
  float param_;
  int keep_;
};

mx::array mass_cutoff(const mx::array& key, const mx::array& probs, Mode mode, float param, int keep) {
  auto s = mx::default_stream(mx::Device::cpu);
  return mx::array(key.shape(), mx::bool_, std::make_shared<MassCutoff>(s, mode, param, keep), {key, probs});
}

}  // namespace

bool mass_cutoff_on_cpu(const mx::array& logits) {
  return mx::default_device() == mx::Device::cpu && logits.dtype() == mx::float32 && logits.ndim() == 2;
}

mx::array top_p_remove_mask(const mx::array& logits, const mx::array& probs, float one_minus_p, int min_keep) {
  return mass_cutoff(logits, probs, Mode::TopP, one_minus_p, min_keep);
}

mx::array typical_remove_mask(const mx::array& shifted, const mx::array& probs, float mass, int min_keep) {
  return mass_cutoff(shifted, probs, Mode::Typical, mass, min_keep);
}

}  // namespace mlxgp::processors
