#include "generation/core/logits_guard.h"

#include <limits>
#include <string>

#include <mlx/mlx.h>

#include "kernels/logits_scan.h"
#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp {

mx::array invalid_rows(const mx::array& logits) {
  if (kernels::logits_scan_supported(logits)) return kernels::logits_scan(logits).invalid_row;
  const float inf = std::numeric_limits<float>::infinity();
  auto x = logits.dtype() == mx::float32 ? logits : mx::astype(logits, mx::float32);
  auto bad_entry = mx::any(mx::logical_or(mx::isnan(x), mx::equal(x, mx::array(inf))), -1);
  return mx::logical_or(bad_entry, mx::equal(mx::max(x, -1), mx::array(-inf)));
}

mx::array invalid_logits(const mx::array& logits) {
  if (kernels::logits_scan_supported(logits)) return kernels::logits_scan(logits).invalid;
  return mx::any(invalid_rows(logits));
}

void fail_invalid_logits(int step) {
  fail("generate", "the model's logits at step " + std::to_string(step) +
                       " hold NaN or infinite values (broken weights, a float16 overflow or a hook?); "
                       "remove_invalid_values=true replaces them instead, as transformers does");
}

void fail_invalid_scores(int step) {
  fail("generate", "the processed scores at step " + std::to_string(step) +
                       " hold NaN or infinite values, or mask every token of a row (logit_bias, suppress_tokens "
                       "or bad_words_ids removing all that is left, or a temperature so small that logits / "
                       "temperature overflows float32)");
}

}  // namespace mlxgp
