#include "mlxgp/decode_rows.h"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>

#include "mlxgp/error.h"
#include "models/model_names.h"

namespace mlxgp {

long long decode_rows(const GenerationConfig& config) {
  long long rows = config.num_beams > 1 ? config.num_beams : std::max(1, config.num_return_sequences);
  return config.guidance_scale && *config.guidance_scale != 1.0 ? 2 * rows : rows;
}

void check_decode_rows_fit(Model& model, long long rows, long long length, const std::string& what) {
  const auto& c = model.config();
  auto gib = [](double bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
    return std::string(buf);
  };
  const long long vocab = std::max(1, c.vocab_size);
  if (rows > INT32_MAX / vocab)
    fail("generate", std::to_string(rows) + " " + what + " x vocabulary " + std::to_string(vocab) +
                         " exceed MLX's 2^31-element array limit; use at most " + std::to_string(INT32_MAX / vocab));
  // Per row: the float32 logits and about seven working copies (log-softmax, processors, scores, top-k),
  // plus keys and values of every layer, allocated in steps of 256 positions (the KV caches' step), twice
  // (a beam reorder or a cache growth copies them), in the activation dtype. Measured: 2000 beams of the
  // default model (3 new tokens) reached 23 GiB before the kernel killed them.
  double act_bytes = 4;
  auto& params = model.parameters();
  if (const auto* norm = activation_dtype_weight(params)) act_bytes = static_cast<double>(norm->itemsize());
  double kv_width = 0;  // keys and values of one position over the layers (gemma4_text's differ per layer)
  for (int i = 0; i < c.num_hidden_layers; ++i) kv_width += 2.0 * layer_kv_heads(c, i) * layer_head_dim(c, i);
  const double per_row = 8.0 * 4.0 * static_cast<double>(vocab) +
                         2.0 * static_cast<double>((std::max(1LL, length) + 255) / 256 * 256) * kv_width * act_bytes;
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return;
  const double budget = 0.8 * static_cast<double>(pages) * static_cast<double>(page);
  if (per_row * static_cast<double>(rows) > budget)
    fail("generate", std::to_string(rows) + " " + what + " need about " + gib(per_row * static_cast<double>(rows)) +
                         " for logits and KV cache, more than 80% of this machine's " +
                         gib(static_cast<double>(pages) * static_cast<double>(page)) + "; use at most " +
                         std::to_string(static_cast<long long>(budget / per_row)));
}

}  // namespace mlxgp
