// Row functions of the norm and activation primitives, shared with the llama.cpp block product that runs
// them fused around its products (ggml_matmul.cpp): one definition, so fused and unfused results are the
// same bits.
#pragma once

#include <cstddef>
#include <vector>

namespace mlxgp::kernels {

// kernels::rms_norm's rows [r0, r1) of x [rows, D] into out (rms_norm.cpp).
void rms_norm_rows(const float* x, const float* w, float* out, int D, float eps, int r0, int r1);

// kernels::swiglu's silu(g) * u over n elements, split across the pool as that primitive splits them
// (swiglu.cpp).
void swiglu_flat(const float* g, const float* u, float* out, size_t n);

// kernels::rope's cos / sin tables: T positions from each start (starts.size() tables), [table, t, dims / 2]
// (rope.cpp).
void rope_tables(int dims, float base, float scale, const std::vector<int>& starts, int T, bool inverse,
                 std::vector<float>& cos_t, std::vector<float>& sin_t);
// One row of D features rotated in its first `dims` by the table row (c, s); the rest copied. in == o is
// allowed (rope.cpp).
void rope_row(const float* in, float* o, const float* c, const float* s, int dims, int D);

struct GgmlRope;
// q and k ([M = B x T rows, heads x head_dim] each, q_heads and k_heads heads) rotated in place as
// kernels::rope rotates their head split: the same tables and row function (rope.cpp).
void rope_heads_inplace(float* q, int q_heads, float* k, int k_heads, int M, int T, const GgmlRope& r);

}  // namespace mlxgp::kernels
