#include "mlxgp/result_json.h"

#include <nlohmann/json.hpp>

namespace mlxgp {

std::string result_json(const GenerationResult& r, const GenerationConfig& config) {
  using json = nlohmann::ordered_json;
  json seqs = json::array();
  for (auto& s : r.sequences) {
    json j = {{"token_ids", s.token_ids}, {"text", s.text}, {"finish_reason", to_string(s.finish_reason)}};
    // Per generated token, only on request.
    if (config.output_scores) j["scores"] = s.token_scores;
    if (config.output_logits) j["logits"] = s.token_logits;
    if (config.output_logprobs) j["logprobs"] = s.logprobs;
    if (s.sequence_score) {  // beam search (HF sequences_scores, beam_indices)
      j["score"] = *s.sequence_score;
      j["beam_indices"] = s.beam_indices;
    }
    seqs.push_back(std::move(j));
  }
  const auto& st = r.stats;
  json stats = {{"prompt_tokens", st.prompt_tokens},
                {"generated_tokens", st.generated_tokens},
                {"prefill_tokens_per_s", st.prefill_tokens_per_s},
                {"decode_tokens_per_s", st.decode_tokens_per_s},
                {"peak_memory_bytes", st.peak_memory_bytes}};
  if (!st.memory_trace.empty()) {
    json trace = json::array();
    for (auto& m : st.memory_trace)
      trace.push_back({{"tokens", m.tokens}, {"peak_bytes", m.peak_bytes}, {"active_bytes", m.active_bytes}});
    stats["memory_trace"] = std::move(trace);
  }
  if (auto& sp = st.speculative)
    stats["speculative"] = {{"drafted_tokens", sp->drafted_tokens},
                            {"accepted_tokens", sp->accepted_tokens},
                            {"acceptance_rate", sp->acceptance_rate()},
                            {"target_forwards", sp->target_forwards},
                            {"tokens_per_target_forward", sp->tokens_per_target_forward()}};
  json out = {{"prompt_token_ids", r.prompt_token_ids}, {"sequences", seqs}, {"stats", stats}};
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace mlxgp
