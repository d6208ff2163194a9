// mlxgp::kernels::rope: rotary position embedding in the "rotate half" layout (transformers'
// apply_rotary_pos_emb, mx::fast::rope with traditional=false) as one CPU primitive. MLX's CPU rope
// took 0.6 ms for one prefill query [1, 9, 124, 64] of SmolLM2 (about 8% of the fp32 prefill over 30
// layers). Here: one [T, dims/2] cos/sin table per call (angles as transformers computes them: float32
// inverse frequencies times float32 positions), applied to every head row, reading the strided
// [B, H, T, D] view that the head split produces in place.
#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <vector>

#include <mlx/mlx.h>
#include <mlx/primitives.h>

#include "kernels/cpu_task.h"
#include "kernels/fused_rows.h"
#include "kernels/row_major.h"
#include "kernels/thread_pool.h"
#include "kernels/kernels.h"

namespace mx = mlx::core;

namespace mlxgp::kernels {

void rope_tables(int dims, float base, float scale, const std::vector<int>& starts, int T, bool inverse,
                 std::vector<float>& cos_t, std::vector<float>& sin_t) {
  // Every layer of a forward pass asks for the same table (q and k too, in the fused product): the last
  // one is kept per thread. A prompt's sines and cosines in double were 1.3% of a Q4_0 int8 prefill.
  struct Key {
    int dims = 0;
    float base = 0, scale = 0;
    std::vector<int> starts;
    int T = 0;
    bool inverse = false;
    bool operator==(const Key&) const = default;
  };
  thread_local Key last;
  thread_local std::vector<float> last_cos, last_sin;
  Key key{dims, base, scale, starts, T, inverse};
  if (key == last && !last_cos.empty()) {
    cos_t = last_cos;
    sin_t = last_sin;
    return;
  }
  const int half = dims / 2;
  const size_t rows_t = starts.size() * T;
  cos_t.assign(rows_t * half, 0.0f);
  sin_t.assign(rows_t * half, 0.0f);
  for (int i = 0; i < half; ++i) {
    // transformers: inv_freq = 1 / base^(arange(0, dim, 2) / dim), in float32.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dims);
    const float inv = static_cast<float>(1.0 / std::pow(static_cast<double>(base), static_cast<double>(exponent)));
    for (size_t b = 0; b < starts.size(); ++b) {
      for (int t = 0; t < T; ++t) {
        const float pos = static_cast<float>(starts[b] + t) * scale;
        const float angle = pos * inv;
        const size_t at = (b * T + t) * half + i;
        cos_t[at] = static_cast<float>(std::cos(static_cast<double>(angle)));
        const float s = static_cast<float>(std::sin(static_cast<double>(angle)));
        sin_t[at] = inverse ? -s : s;
      }
    }
  }
  last = std::move(key);
  last_cos = cos_t;
  last_sin = sin_t;
}

// Out of line, so the primitive here and the fused product (ggml_matmul.cpp) run the same instructions.
__attribute__((noinline)) void rope_row(const float* in, float* o, const float* c, const float* s, int dims, int D) {
  const int half = dims / 2;
  for (int i = 0; i < half; ++i) {
    const float x1 = in[i], x2 = in[i + half];
    o[i] = x1 * c[i] - x2 * s[i];
    o[i + half] = x2 * c[i] + x1 * s[i];
  }
  for (int i = dims; i < D; ++i) o[i] = in[i];
}

void rope_heads_inplace(float* q, int q_heads, float* k, int k_heads, int M, int T, const GgmlRope& r) {
  const int half = r.dims / 2;
  std::vector<float> cos_t, sin_t;
  rope_tables(r.dims, r.base, r.scale, r.row_offsets.empty() ? std::vector<int>{r.offset} : r.row_offsets, T, false,
              cos_t, sin_t);
  for (auto [y, heads] : {std::pair{q, q_heads}, std::pair{k, k_heads}}) {
    for (int m = 0; m < M; ++m) {
      const size_t row_t = (r.row_offsets.empty() ? 0 : static_cast<size_t>(m / T) * T) + m % T;
      for (int h = 0; h < heads; ++h) {
        float* row = y + (static_cast<size_t>(m) * heads + h) * r.head_dim;
        rope_row(row, row, cos_t.data() + row_t * half, sin_t.data() + row_t * half, r.dims, r.head_dim);
      }
    }
  }
}

namespace {

struct RopeParams {
  int dims;
  float base;
  float scale;
  int offset;
  bool inverse;  // rotate by -angle: the vjp of the forward rotation
  // Per batch row: the position of the row's first query (left-padded batches); empty: `offset` for all.
  std::vector<int> row_offsets;
  bool operator==(const RopeParams&) const = default;
};

void run_rope(const mx::array& x, mx::array& out, const RopeParams& p) {
  const int B = x.shape(0), H = x.shape(1), T = x.shape(2), D = x.shape(3);
  const int half = p.dims / 2;
  // One table of T positions per distinct start: a single one, or one per batch row.
  const int tables = p.row_offsets.empty() ? 1 : B;
  std::vector<float> cos_t, sin_t;
  rope_tables(p.dims, p.base, p.scale, p.row_offsets.empty() ? std::vector<int>{p.offset} : p.row_offsets, T, p.inverse,
              cos_t, sin_t);
  // Rows of D features, read in place when the feature axis is contiguous (the head split's transposed
  // view is); other layouts are copied row-major first.
  std::vector<float> copy;
  const float* src = x.data<float>();
  int64_t st[3] = {x.strides()[0], x.strides()[1], x.strides()[2]};
  if (x.strides()[3] != 1) {
    copy.resize(x.size());
    gather_row_major(x, copy.data());
    src = copy.data();
    st[2] = D;
    st[1] = static_cast<int64_t>(T) * D;
    st[0] = static_cast<int64_t>(H) * T * D;
  }
  float* dst = out.data<float>();
  parallel_rows(B * H * T, D, [&](int r0, int r1) {
    for (int r = r0; r < r1; ++r) {
      const int t = r % T, h = (r / T) % H, b = r / (T * H);
      const size_t row_t = (tables == 1 ? 0 : static_cast<size_t>(b) * T) + t;
      rope_row(src + b * st[0] + h * st[1] + t * st[2], dst + static_cast<size_t>(r) * D, cos_t.data() + row_t * half,
               sin_t.data() + row_t * half, p.dims, D);
    }
  });
}

mx::array make_rope(const mx::array& x, const RopeParams& p);

class CpuRope : public mx::UnaryPrimitive {
 public:
  CpuRope(mx::Stream s, RopeParams p) : mx::UnaryPrimitive(s), p_(p) {}

  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    enqueue_cpu(stream(), in, out, [&] {
      return [x = mx::array::unsafe_weak_copy(in[0]), o = mx::array::unsafe_weak_copy(out), p = p_]() mutable {
        run_rope(x, o, p);
      };
    });
  }
  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[kernels] the custom rope runs on the CPU only");
  }
  const char* name() const override { return "MlxgpCpuRope"; }

  // A rotation's transpose is the rotation by the opposite angle.
  std::vector<mx::array> vjp(const std::vector<mx::array>&, const std::vector<mx::array>& cotangents,
                             const std::vector<int>&, const std::vector<mx::array>&) override {
    RopeParams back = p_;
    back.inverse = !p_.inverse;
    return {make_rope(cotangents[0], back)};
  }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const CpuRope*>(&other);
    return o && o->p_ == p_;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& in) override { return {in[0].shape()}; }

 private:
  RopeParams p_;
};

mx::array make_rope(const mx::array& x, const RopeParams& p) {
  return mx::array(x.shape(), mx::float32, std::make_shared<CpuRope>(mx::default_stream(mx::Device::cpu), p), {x});
}

}  // namespace

bool rope_supported(const mx::array& x, int dims) {
  return available() && mx::default_device() == mx::Device::cpu && x.dtype() == mx::float32 && x.ndim() == 4 &&
         dims > 0 && dims % 2 == 0 && dims <= x.shape(3);
}

mx::array rope(const mx::array& x, int dims, float base, float scale, int offset) {
  if (!rope_supported(x, dims)) return mx::fast::rope(x, dims, false, base, scale, offset);
  return make_rope(x, RopeParams{dims, base, scale, offset, false, {}});
}

mx::array rope(const mx::array& x, int dims, float base, float scale, const std::vector<int>& row_offsets) {
  if (x.ndim() != 4 || static_cast<int>(row_offsets.size()) != x.shape(0))
    throw std::invalid_argument("[kernels] rope: one offset per batch row");
  if (!rope_supported(x, dims)) {
    mx::array offs(row_offsets.data(), {static_cast<int>(row_offsets.size())}, mx::int32);
    return mx::fast::rope(x, dims, false, base, scale, offs);
  }
  return make_rope(x, RopeParams{dims, base, scale, 0, false, row_offsets});
}

}  // namespace mlxgp::kernels
