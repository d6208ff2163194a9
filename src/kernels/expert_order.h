// The (token, expert) pairs of a gathered expert product in expert order, so each expert's weights are read
// once for all the tokens routed to it (ggml_gather.cpp, gather_qmm.cpp).
#pragma once

#include <cstdint>
#include <numeric>
#include <vector>

namespace mlxgp::kernels {

struct ExpertOrder {
  std::vector<int> start;     // expert e's pairs are order[start[e] .. start[e + 1])
  std::vector<int> order;     // pair indices, each expert's in token order (a counting sort)
  std::vector<int> unrouted;  // pairs whose expert index is out of range: their rows are zero
  int count(int e) const { return start[e + 1] - start[e]; }
  int pair(int e, int i) const { return order[start[e] + i]; }
};

inline ExpertOrder order_by_expert(const uint32_t* idx, int pairs, int experts) {
  ExpertOrder o;
  o.start.assign(experts + 1, 0);
  for (int p = 0; p < pairs; ++p)
    if (idx[p] < static_cast<uint32_t>(experts)) ++o.start[idx[p] + 1];
  std::partial_sum(o.start.begin(), o.start.end(), o.start.begin());
  std::vector<int> next(o.start.begin(), o.start.end() - 1);
  o.order.resize(o.start.back());
  for (int p = 0; p < pairs; ++p) {
    if (idx[p] < static_cast<uint32_t>(experts)) o.order[next[idx[p]]++] = p;
    else o.unrouted.push_back(p);
  }
  return o;
}

}  // namespace mlxgp::kernels
