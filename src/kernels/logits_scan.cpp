// kernels::logits_scan: argmax and the invalid-logits test of every row in one read of the logits. At
// batch 8 the two took about 1 ms of a 12 ms decode step as MLX ops (isnan, == inf, or, any, max, == -inf,
// or, argmax: each a single-threaded pass and a graph node per request).
#include "kernels/logits_scan.h"

#include <cmath>
#include <cstdint>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <memory>
#include <stdexcept>

#include <mlx/primitives.h>

#include "kernels/cpu_task.h"
#include "kernels/kernels.h"
#include "kernels/row_major.h"

namespace mlxgp::kernels {

namespace {

struct RowScan {
  int32_t argmax;
  bool invalid;
};

// Eight lanes each keep their first largest value (strictly greater replaces), so the smallest index among
// the lanes holding the row's maximum is its first occurrence: mx::argmax's answer for any row without NaN
// (a row with one is invalid, and its token is never used).
#if defined(__x86_64__)
__attribute__((target("avx2"))) RowScan scan_row(const float* x, int n) {
  const __m256 pos_inf = _mm256_set1_ps(INFINITY);
  __m256 best = _mm256_set1_ps(-INFINITY);
  __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256i best_idx = idx;
  __m256 bad = _mm256_setzero_ps();
  const __m256i eight = _mm256_set1_epi32(8);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 gt = _mm256_cmp_ps(v, best, _CMP_GT_OQ);
    best = _mm256_blendv_ps(best, v, gt);
    best_idx = _mm256_blendv_epi8(best_idx, idx, _mm256_castps_si256(gt));
    bad = _mm256_or_ps(bad, _mm256_or_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q), _mm256_cmp_ps(v, pos_inf, _CMP_EQ_OQ)));
    idx = _mm256_add_epi32(idx, eight);
  }
  alignas(32) float lane_best[8];
  alignas(32) int32_t lane_idx[8];
  _mm256_store_ps(lane_best, best);
  _mm256_store_si256(reinterpret_cast<__m256i*>(lane_idx), best_idx);
  float m = -INFINITY;
  int32_t at = 0;
  for (int l = 0; l < 8; ++l)
    if (lane_best[l] > m || (lane_best[l] == m && lane_idx[l] < at)) {
      m = lane_best[l];
      at = lane_idx[l];
    }
  bool invalid = _mm256_movemask_ps(bad) != 0;
  for (; i < n; ++i) {  // the tail comes after every lane's indices: strictly greater keeps the first
    const float v = x[i];
    invalid = invalid || std::isnan(v) || v == INFINITY;
    if (v > m) {
      m = v;
      at = i;
    }
  }
  return {m == -INFINITY ? 0 : at, invalid || m == -INFINITY};
}
#else
RowScan scan_row(const float* x, int n) {  // unused: logits_scan_supported() is false off x86-64
  float m = -INFINITY;
  int32_t at = 0;
  bool invalid = false;
  for (int i = 0; i < n; ++i) {
    invalid = invalid || std::isnan(x[i]) || x[i] == INFINITY;
    if (x[i] > m) {
      m = x[i];
      at = i;
    }
  }
  return {m == -INFINITY ? 0 : at, invalid || m == -INFINITY};
}
#endif

class CpuLogitsScan : public mx::Primitive {
 public:
  explicit CpuLogitsScan(mx::Stream s) : mx::Primitive(s) {}

  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& outs) override {
    enqueue_cpu(stream(), in, outs, [&] {
      return [x = mx::array::unsafe_weak_copy(in[0]), a = mx::array::unsafe_weak_copy(outs[0]),
              r = mx::array::unsafe_weak_copy(outs[1]), any = mx::array::unsafe_weak_copy(outs[2])]() mutable {
        RowMajor<float> xs(x);
        const int n = x.shape(-1);
        const int rows = static_cast<int>(x.size() / n);
        bool any_bad = false;
        for (int row = 0; row < rows; ++row) {
          const RowScan s = scan_row(xs.ptr + static_cast<size_t>(row) * n, n);
          a.data<int32_t>()[row] = s.argmax;
          r.data<bool>()[row] = s.invalid;
          any_bad = any_bad || s.invalid;
        }
        *any.data<bool>() = any_bad;
      };
    });
  }
  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("[kernels] the logits scan runs on the CPU only");
  }
  const char* name() const override { return "MlxgpCpuLogitsScan"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    return dynamic_cast<const CpuLogitsScan*>(&other) != nullptr;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& in) override {
    mx::Shape rows(in[0].shape().begin(), in[0].shape().end() - 1);
    return {rows, rows, {}};
  }
};

}  // namespace

bool logits_scan_supported(const mx::array& logits) {
  return available() && mx::default_device() == mx::Device::cpu && logits.dtype() == mx::float32 &&
         logits.ndim() >= 1 && logits.shape(-1) > 0;
}

LogitsScan logits_scan(const mx::array& logits) {
  if (!logits_scan_supported(logits)) throw std::invalid_argument("[kernels] logits_scan: unsupported logits");
  mx::Shape rows(logits.shape().begin(), logits.shape().end() - 1);
  auto outs = mx::array::make_arrays({rows, rows, {}}, {mx::int32, mx::bool_, mx::bool_},
                                     std::make_shared<CpuLogitsScan>(mx::default_stream(mx::Device::cpu)), {logits});
  return {outs[0], outs[1], outs[2]};
}

}  // namespace mlxgp::kernels
