// The fused CPU primitive behind LogitsProcessor::row_kernel, and the row helpers (row_kernels.h).
#include "generation/processors/row_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <stdexcept>

#include <mlx/primitives.h>

#include "kernels/cpu_task.h"
#include "kernels/row_major.h"

namespace mx = mlx::core;

namespace mlxgp::processors {

namespace {

class RowKernels : public mx::UnaryPrimitive {
 public:
  RowKernels(mx::Stream s, std::vector<RowKernel> kernels, bool with_ids)
      : mx::UnaryPrimitive(s), kernels_(std::move(kernels)), with_ids_(with_ids) {}

  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    kernels::enqueue_cpu(stream(), in, out, [&] {
      return [x = mx::array::unsafe_weak_copy(in[0]), ids = mx::array::unsafe_weak_copy(in[1]),
              o = mx::array::unsafe_weak_copy(out), kernels = kernels_, with_ids = with_ids_]() mutable {
        kernels::RowMajor<float> xr(x);
        const int v = x.shape(-1);
        const int rows = static_cast<int>(x.size() / v);
        std::vector<int32_t> id_copy;
        const int32_t* id_ptr = nullptr;
        int t = 0;
        if (with_ids) {
          t = ids.shape(-1);
          kernels::RowMajor<int32_t> ir(ids);
          id_copy.assign(ir.ptr, ir.ptr + ids.size());
          id_ptr = id_copy.data();
        }
        float* dst = o.data<float>();
        std::copy(xr.ptr, xr.ptr + x.size(), dst);
        for (int r = 0; r < rows; ++r) {
          std::span<float> row(dst + static_cast<size_t>(r) * v, v);
          std::span<const int32_t> row_ids =
              with_ids ? std::span<const int32_t>(id_ptr + static_cast<size_t>(r) * t, t) : std::span<const int32_t>();
          for (auto& k : kernels) k(row, row_ids);
        }
      };
    });
  }
  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[processors] row kernels run on the CPU only");
  }
  const char* name() const override { return "MlxgpLogitsRowKernels"; }
  bool is_equivalent(const mx::Primitive&) const override { return false; }  // kernels capture step state
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& in) override { return {in[0].shape()}; }

 private:
  std::vector<RowKernel> kernels_;
  bool with_ids_;
};

void sort_by_key(std::vector<int>& idx, const float* key) {
  // Ascending, ties by index: the order mx::argsort (stable) gives.
  std::sort(idx.begin(), idx.end(), [key](int a, int b) { return key[a] < key[b] || (key[a] == key[b] && a < b); });
}

}  // namespace

bool row_kernels_enabled(const mx::array& logits) {
  static const bool disabled = [] {
    const char* e = std::getenv("MLXGP_DISABLE_KERNELS");
    return e && *e && std::string(e) != "0";
  }();
  return !disabled && mx::default_device() == mx::Device::cpu && logits.dtype() == mx::float32 && logits.ndim() == 2;
}

mx::array apply_row_kernels(const mx::array& logits, const mx::array& ids, std::vector<RowKernel> kernels) {
  const bool with_ids = ids.ndim() == 2 && ids.shape(0) == logits.shape(0);
  auto id_arr = with_ids ? mx::astype(ids, mx::int32) : mx::zeros({1, 1}, mx::int32);
  auto s = mx::default_stream(mx::Device::cpu);
  return mx::array(logits.shape(), mx::float32, std::make_shared<RowKernels>(s, std::move(kernels), with_ids),
                   {logits, id_arr});
}

void softmax_row(std::span<const float> x, std::vector<float>& probs) {
  probs.assign(x.size(), 0.0f);
  float m = -INFINITY;
  for (float f : x) m = std::max(m, f);
  if (m == -INFINITY) return;
  float sum = 0.0f;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] == -INFINITY) continue;
    float e = std::exp(x[i] - m);
    probs[i] = e;
    sum += e;
  }
  const float inv = 1.0f / sum;
  for (auto& p : probs) p *= inv;
}

float logsumexp_row(std::span<const float> x) {
  float m = -INFINITY;
  for (float f : x) m = std::max(m, f);
  if (!std::isfinite(m)) return m;
  float sum = 0.0f;
  for (float f : x)
    if (f != -INFINITY) sum += std::exp(f - m);
  return m + std::log(sum);
}

float kth_largest(std::span<const float> x, int k, std::vector<float>& scratch) {
  if (k > 256) {
    scratch.assign(x.begin(), x.end());
    std::nth_element(scratch.begin(), scratch.begin() + (k - 1), scratch.end(), std::greater<float>());
    return scratch[k - 1];
  }
  // Small k (top_k = 50): one pass keeping the k largest in a min-heap; duplicates count, as in
  // torch.topk's values.
  scratch.assign(x.begin(), x.begin() + k);
  std::make_heap(scratch.begin(), scratch.end(), std::greater<float>());
  for (size_t i = k; i < x.size(); ++i) {
    if (!(x[i] > scratch.front())) continue;
    std::pop_heap(scratch.begin(), scratch.end(), std::greater<float>());
    scratch.back() = x[i];
    std::push_heap(scratch.begin(), scratch.end(), std::greater<float>());
  }
  return scratch.front();
}

// TopPLogitsWarper. Tokens with probability 0 have strictly smaller logits than every other token (exp
// is monotone), so they are the bottom of the ascending order and their running sum is exactly
// 0 <= 1 - p: removed, unless fewer than min_keep tokens have mass (then sort them all).
void top_p_remove_row(const float* logits, const float* probs, bool* remove, int v, float limit, int keep,
                      std::vector<int>& idx) {
  idx.clear();
  for (int i = 0; i < v; ++i)
    if (probs[i] > 0.0f) idx.push_back(i);
  const bool all = static_cast<int>(idx.size()) < keep;
  if (all) {
    idx.resize(v);
    std::iota(idx.begin(), idx.end(), 0);
  }
  std::fill(remove, remove + v, !all);
  sort_by_key(idx, logits);
  const int offset = v - static_cast<int>(idx.size());  // sorted position of idx[0]
  float sum = 0.0f;                                     // sequential float32, as a CPU cumsum
  for (size_t j = 0; j < idx.size(); ++j) {
    sum += probs[idx[j]];
    const int pos = offset + static_cast<int>(j);
    remove[idx[j]] = sum <= limit && pos < v - keep;
  }
}

// TypicalLogitsWarper. Tokens at -inf have an infinite shift, so they sort last with probability 0;
// only the finite ones are sorted.
void typical_remove_row(const float* shifted, const float* probs, bool* remove, int v, float mass, int keep,
                        std::vector<int>& idx) {
  idx.clear();
  for (int i = 0; i < v; ++i)
    if (std::isfinite(shifted[i])) idx.push_back(i);
  sort_by_key(idx, shifted);
  const int n = static_cast<int>(idx.size());
  float sum = 0.0f;
  int below = 0;  // count(cumsum < mass) over the whole sorted row
  for (int j = 0; j < n; ++j) {
    sum += probs[idx[j]];
    below += sum < mass;
  }
  if (sum < mass) below += v - n;  // the zero-mass tail keeps the final sum
  const int last = std::min(below, v - 1);
  const float limit = last < n ? shifted[idx[last]] : INFINITY;
  for (int i = 0; i < v; ++i) remove[i] = shifted[i] > limit;
  for (int j = 0; j < std::min(keep, n); ++j) remove[idx[j]] = false;  // the first min_keep sorted positions
}

}  // namespace mlxgp::processors
