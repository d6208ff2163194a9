// The two products of prefill_attention.cpp's tiles for one vector width (dense_gemm.cpp uses the first
// one too). tile_isas.h includes this file twice, once per ISA, inside a namespace that defines MLXGP_TILE_TARGET (the
// function attribute of that ISA) and `Vec` (the vector type, its width N in floats, its operations, and the register
// blocking: kGroups row vectors by kKeys keys for the scores, kGroups row vectors by kDims value elements for the
// outputs). No include guard, on purpose.
//
// Layouts (see prefill_attention.cpp): qt [D][P] queries, st [keys][P] scores then probabilities, ot
// [D][P] outputs; P a multiple of Vec::N. Each key (or value) element is broadcast against kGroups
// vectors of N rows, so both loops are bound by multiply-adds, not loads.

// st[j][g] (j < J keys, g < G row vectors) = sum_d k_j[d] * qt[d][g].
template <int G, int J>
MLXGP_TILE_TARGET inline void score_block(const float* qt, int P, const float* k, int64_t kstride, int D, float* st) {
  typename Vec::V acc[J][G];
  for (int j = 0; j < J; ++j)
    for (int g = 0; g < G; ++g) acc[j][g] = Vec::zero();
  for (int d = 0; d < D; ++d) {
    typename Vec::V qv[G];
    for (int g = 0; g < G; ++g) qv[g] = Vec::load(qt + static_cast<size_t>(d) * P + Vec::N * g);
    for (int j = 0; j < J; ++j) {
      const auto kb = Vec::set1(k[j * kstride + d]);
      for (int g = 0; g < G; ++g) acc[j][g] = Vec::fmadd(kb, qv[g], acc[j][g]);
    }
  }
  for (int j = 0; j < J; ++j)
    for (int g = 0; g < G; ++g) Vec::store(st + static_cast<size_t>(j) * P + Vec::N * g, acc[j][g]);
}

// ot[d][g] += sum_j v_j[d] * st[j][g] for d in [d0, d0 + E).
template <int G, int E>
MLXGP_TILE_TARGET inline void value_block(const float* st, int P, const float* v, int64_t vstride, int n, int d0,
                                          float* ot) {
  typename Vec::V acc[E][G];
  for (int e = 0; e < E; ++e)
    for (int g = 0; g < G; ++g) acc[e][g] = Vec::load(ot + static_cast<size_t>(d0 + e) * P + Vec::N * g);
  for (int j = 0; j < n; ++j) {
    typename Vec::V pv[G];
    for (int g = 0; g < G; ++g) pv[g] = Vec::load(st + static_cast<size_t>(j) * P + Vec::N * g);
    for (int e = 0; e < E; ++e) {
      const auto vb = Vec::set1(v[j * vstride + d0 + e]);
      for (int g = 0; g < G; ++g) acc[e][g] = Vec::fmadd(vb, pv[g], acc[e][g]);
    }
  }
  for (int e = 0; e < E; ++e)
    for (int g = 0; g < G; ++g) Vec::store(ot + static_cast<size_t>(d0 + e) * P + Vec::N * g, acc[e][g]);
}

template <int G>
MLXGP_TILE_TARGET void score_rows(const float* qt, int P, const float* k, int64_t kstride, int n, int D, float* st) {
  int j = 0;
  for (; j + Vec::kKeys <= n; j += Vec::kKeys)
    score_block<G, Vec::kKeys>(qt, P, k + j * kstride, kstride, D, st + static_cast<size_t>(j) * P);
  for (; j < n; ++j) score_block<G, 1>(qt, P, k + j * kstride, kstride, D, st + static_cast<size_t>(j) * P);
}

template <int G>
MLXGP_TILE_TARGET void value_rows(const float* st, int P, const float* v, int64_t vstride, int n, int D, float* ot) {
  int d0 = 0;
  for (; d0 + Vec::kDims <= D; d0 += Vec::kDims) value_block<G, Vec::kDims>(st, P, v, vstride, n, d0, ot);
  for (; d0 < D; d0 += 4) value_block<G, 4>(st, P, v, vstride, n, d0, ot);  // D is a multiple of 8
}

// Calls f.template operator()<G>(g) over the P / N row vectors in groups of kGroups (the rest in one
// smaller group).
template <int G = Vec::kGroups, class F>
MLXGP_TILE_TARGET void for_row_groups(int P, int g, F&& f) {
  if constexpr (G > 0) {
    for (; g + G <= P / Vec::N; g += G) f.template operator()<G>(g);
    for_row_groups<G - 1>(P, g, f);
  }
}

// The tile's scores st = qt . keys (n keys from k), then, after the softmax, ot += st . values.
MLXGP_TILE_TARGET inline void tile_scores(const float* qt, int P, const float* k, int64_t kstride, int n, int D,
                                          float* st) {
  for_row_groups(P, 0, [&]<int G>(int g) { score_rows<G>(qt + Vec::N * g, P, k, kstride, n, D, st + Vec::N * g); });
}
MLXGP_TILE_TARGET inline void tile_values(const float* st, int P, const float* v, int64_t vstride, int n, int D,
                                          float* ot) {
  for_row_groups(P, 0, [&]<int G>(int g) { value_rows<G>(st + Vec::N * g, P, v, vstride, n, D, ot + Vec::N * g); });
}
