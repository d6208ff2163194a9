#include "generation/structured/grammar_constraint.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <iostream>
#include <map>
#include <set>
#include <mutex>
#include <sstream>
#include <span>
#include <string>
#include <vector>

#include <dlpack/dlpack.h>
#include <nlohmann/json.hpp>
#include <regex>

#include <mlx/mlx.h>
#include <xgrammar/xgrammar.h>

#include "generation/structured/token_vocab.h"
#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

// xgrammar's message without the "[12:00:00] /path/to/source.cc:83: " its checks put first: the user's
// problem, not our build's paths.
std::string xgrammar_message(const std::exception& e) {
  static const std::regex kSource(R"(^\[[0-9:]+\] \S+:[0-9]+: )");
  return std::regex_replace(std::string(e.what()), kSource, "", std::regex_constants::format_first_only);
}

// xgrammar's message under ours (Error keeps it on one line).
[[noreturn]] void fail_grammar(const std::string& what, const std::exception& e) {
  fail("grammar", what + ": " + xgrammar_message(e));
}

// Compilers are built per (tokenizer, vocabulary size, stop tokens): the vocabulary's preprocessing is
// the costly part, and xgrammar's compiler caches the grammars compiled with it.
std::shared_ptr<xgrammar::GrammarCompiler> compiler_for(const std::shared_ptr<const Tokenizer>& tokenizer, int vocab,
                                                        const std::vector<int>& stops) {
  struct Entry {
    std::weak_ptr<const Tokenizer> tokenizer;
    int vocab;
    std::vector<int> stops;
    std::shared_ptr<xgrammar::GrammarCompiler> compiler;
  };
  static std::mutex m;
  static std::vector<Entry> cache;
  std::lock_guard<std::mutex> lock(m);
  std::erase_if(cache, [](const Entry& e) { return e.tokenizer.expired(); });
  for (auto& e : cache)
    if (e.tokenizer.lock() == tokenizer && e.vocab == vocab && e.stops == stops) return e.compiler;
  auto bytes = token_vocab(*tokenizer);
  if (static_cast<int>(bytes.size()) > vocab) bytes.resize(vocab);  // ids past the logits can never be chosen
  try {
    xgrammar::TokenizerInfo info(bytes, xgrammar::VocabType::RAW, vocab, stops, false);
    auto compiler = std::make_shared<xgrammar::GrammarCompiler>(info, 2, true);
    cache.push_back({tokenizer, vocab, stops, compiler});
    return compiler;
  } catch (const std::exception& e) {
    fail_grammar("cannot prepare the vocabulary", e);
  }
}

// JSON-schema keywords xgrammar 0.2.8 drops without a word (json_schema_converter.cc): a schema using
// them would be enforced only in part. Map keys under properties / $defs are names, not keywords.
// xgrammar's compile time grows much faster than the nesting (1,000 nested arrays: over a minute, with
// the server's engine waiting); no real schema comes near this.
constexpr int kMaxSchemaDepth = 128;

void refuse_unenforced_keywords(const nlohmann::json& s, int depth = 0) {
  if (depth > kMaxSchemaDepth)  // schema levels: a keyword's schema, or a property's, is one deeper
    fail("grammar", "json_schema nests deeper than " + std::to_string(kMaxSchemaDepth) + " levels");
  static const char* kIgnored[] = {"uniqueItems", "contains", "minContains", "maxContains",       "not",
                                   "if",          "then",     "else",        "dependentRequired", "dependentSchemas",
                                   "dependencies"};
  if (s.is_array()) {
    for (auto& x : s) refuse_unenforced_keywords(x, depth);  // anyOf's list, prefixItems: schemas side by side
    return;
  }
  if (!s.is_object()) return;
  for (const char* k : kIgnored)
    if (s.contains(k))
      fail("grammar", std::string("json_schema: the keyword '") + k + "' cannot be enforced (xgrammar ignores it)");
  // xgrammar turns a "format" it has no pattern for into any string, and builds an object from its
  // "properties" alone: a required name missing there is left out of the object.
  static const std::set<std::string> kFormats = {
      "email",    "date", "time", "date-time",     "duration",     "ipv4",         "ipv6",
      "hostname", "uuid", "uri",  "uri-reference", "uri-template", "json-pointer", "relative-json-pointer"};
  if (auto f = s.find("format"); f != s.end() && f->is_string() && !kFormats.contains(f->get<std::string>()))
    fail("grammar", "json_schema: the format '" + f->get<std::string>() + "' cannot be enforced (xgrammar knows " +
                        "email, date, time, date-time, duration, ipv4, ipv6, hostname, uuid, uri, uri-reference, " +
                        "uri-template, json-pointer and relative-json-pointer)");
  if (auto r = s.find("required"); r != s.end() && r->is_array()) {
    const auto props = s.find("properties");
    for (auto& name : *r)
      if (name.is_string() && (props == s.end() || !props->is_object() || !props->contains(name.get<std::string>())))
        fail("grammar", "json_schema: the required property '" + name.get<std::string>() +
                            "' is not among the object's properties (xgrammar generates the listed ones only)");
  }
  for (auto& [key, value] : s.items()) {
    if (key == "properties" || key == "patternProperties" || key == "$defs" || key == "definitions") {
      if (value.is_object())
        for (auto& [name, sub] : value.items()) refuse_unenforced_keywords(sub, depth + 1);
    } else if (key != "enum" && key != "const" && key != "examples" && key != "default") {
      refuse_unenforced_keywords(value, depth + 1);
    }
  }
}

// xgrammar reports what it loosens (allOf with several branches, a oneOf it turns into anyOf, length
// limits next to a pattern, multipleOf) only as warnings on stderr: those become the error, so a schema
// is enforced exactly or refused. stderr is taken for the compile only (serialised: it is global).
// A warning that changes nothing: xgrammar matches an escaped character it has no escape for literally,
// which is what Python's re does for punctuation, spaces and control characters ("\\ ", "\\-", re.escape's
// backslash-newline). An escaped letter or digit (\\A, \\Z, \\b) means something else in re: not benign.
bool benign_warning(const std::string& w) {
  static const std::string head = "Escape sequence '\\", tail = "' is not recognized";
  const auto at = w.find(head);
  if (at == std::string::npos) return false;
  const auto end = w.find(tail, at + head.size());
  if (end == std::string::npos) return false;
  const std::string escaped = w.substr(at + head.size(), end - at - head.size());
  if (escaped.size() == 1) return !std::isalnum(static_cast<unsigned char>(escaped[0]));
  return escaped.size() == 2 && escaped[0] == '\\';  // a control character, printed escaped ("\\n")
}

// Compiles with `compile`, turning any warning xgrammar logs into the error: `what` names the input
// ("json_schema", "regex", "grammar") and `text` is it (xgrammar caches the grammar, not its warnings).
template <class Compile>
xgrammar::CompiledGrammar compile_exactly(const std::string& what, const std::string& text, Compile&& compile) {
  static std::mutex m;
  static std::map<std::string, std::string> refused;
  std::lock_guard<std::mutex> lock(m);
  const std::string key = what + '\0' + text;
  if (auto it = refused.find(key); it != refused.end()) fail("grammar", it->second);
  std::ostringstream captured;
  auto* previous = std::cerr.rdbuf(captured.rdbuf());
  try {
    auto g = compile();
    std::cerr.rdbuf(previous);
    // Lines "[time] file.cc:line: Warning: message"; the first that is not benign refuses.
    std::istringstream lines(captured.str());
    for (std::string line; std::getline(lines, line);) {
      const auto p = line.find(": Warning: ");
      if (p == std::string::npos) continue;
      const std::string warning = line.substr(p + 11);
      if (benign_warning(warning)) continue;
      refused[key] = what + " cannot be enforced exactly: " + warning;
      fail("grammar", refused[key]);
    }
    return g;
  } catch (...) {
    std::cerr.rdbuf(previous);
    throw;
  }
}

xgrammar::CompiledGrammar compile_schema_exactly(xgrammar::GrammarCompiler& c, const std::string& schema) {
  try {
    refuse_unenforced_keywords(nlohmann::json::parse(schema));
  } catch (const nlohmann::json::exception& e) {
    fail("grammar", std::string("invalid json_schema: ") + xgrammar_message(e));
  }
  return compile_exactly("json_schema", schema, [&] { return c.CompileJSONSchema(schema); });
}

xgrammar::CompiledGrammar compile(xgrammar::GrammarCompiler& c, const GenerationConfig& config) {
  try {
    if (config.json_schema) return compile_schema_exactly(c, *config.json_schema);
    if (config.json_object) return c.CompileBuiltinJSONGrammar();
    if (config.regex) return compile_exactly("regex", *config.regex, [&] { return c.CompileRegex(*config.regex); });
    return compile_exactly("grammar", *config.grammar, [&] { return c.CompileGrammar(*config.grammar, "root"); });
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail_grammar(config.json_schema ? "invalid json_schema" : config.regex ? "invalid regex" : "invalid grammar", e);
  }
}

// A matcher and the generated tokens it has taken.
struct Line {
  std::vector<int> tokens;
  xgrammar::GrammarMatcher matcher;
  bool dead = false;  // holds a token the constraint rejects (a speculative candidate that will be refused)
};

// The matchers of one request, shared by the processor (graph building, host thread) and the row
// kernels it hands out (run later on the CPU stream), hence the lock. Its state comes from the ids, like
// the other processors': each row's matcher is forked from a recent matcher whose tokens begin that
// row's generated tokens (its previous step, its parent beam, the accepted prefix of a speculative
// round) and takes the rest, so beam reordering, speculative rollback and rows that share a parent need
// nothing from the decoding loops.
class GrammarState {
 public:
  GrammarState(std::shared_ptr<const xgrammar::CompiledGrammar> grammar, std::vector<int> stops, int vocab,
               bool tentative)
      : grammar_(std::move(grammar)), stops_(std::move(stops)), vocab_(vocab), tentative_(tentative) {
    special_ = special_ids(*grammar_);
  }

  std::shared_ptr<GrammarState> copy() const {
    std::lock_guard<std::mutex> lock(m_);
    auto c = std::make_shared<GrammarState>(grammar_, stops_, vocab_, tentative_);
    c->prompt_ = prompt_;
    c->dead_beams_ = dead_beams_;
    c->error_ = error_;
    for (auto& l : recent_) c->recent_.push_back({l.tokens, l.matcher.Fork(), l.dead});
    return c;
  }
  void start(int prompt_tokens) {
    std::lock_guard<std::mutex> lock(m_);
    prompt_ = prompt_tokens;
    recent_.clear();
  }
  void retarget(std::shared_ptr<const xgrammar::CompiledGrammar> grammar, int vocab) {
    std::lock_guard<std::mutex> lock(m_);
    grammar_ = std::move(grammar);
    special_ = special_ids(*grammar_);
    vocab_ = vocab;
    recent_.clear();
  }
  int vocab() const { return vocab_; }
  int prompt() const { return prompt_; }
  void set_dead_beams(bool on) { dead_beams_ = on; }
  // A violation found by a row kernel, raised on the host at the next step.
  void raise_pending() {
    std::lock_guard<std::mutex> lock(m_);
    if (error_.empty()) return;
    std::string e = std::move(error_);
    error_.clear();
    fail("grammar", e);
  }

  // Masks one row of logits (-inf where the row's matcher forbids the token), given the row's ids.
  // Returns false (and keeps the reason) when the ids break the constraint or no token is left.
  bool mask_row(std::span<float> logits, std::span<const int32_t> ids) {
    std::lock_guard<std::mutex> lock(m_);
    if (static_cast<int>(ids.size()) < prompt_) return note("the constraint needs the row's ids, prompt first");
    Line line = line_for(ids.subspan(prompt_));
    if (!line.dead && !line.matcher.IsTerminated()) {
      const int words = xgrammar::GetBitmaskSize(vocab_);
      bits_.resize(static_cast<size_t>(words));
      int64_t shape[1] = {words};
      DLTensor t{bits_.data(), DLDevice{kDLCPU, 0}, 1, DLDataType{kDLInt, 32, 1}, shape, nullptr, 0};
      if (line.matcher.FillNextTokenBitmask(&t)) {
        bool any = false, allowed = false;
        const int n = std::min<int>(vocab_, static_cast<int>(logits.size()));
        for (int v = 0; v < n; ++v) {
          if ((static_cast<uint32_t>(bits_[v >> 5]) >> (v & 31)) & 1u) {
            allowed = true;
            any = any || logits[v] != -INFINITY;
          } else {
            logits[v] = -INFINITY;
          }
        }
        if (!allowed && !tentative_)  // e.g. a grammar whose rules never end: it matches no text
          note("the constraint allows no token after " + std::to_string(line.tokens.size()) +
               " generated tokens and cannot end there: it matches no text that starts so");
        else if (!any && !tentative_)
          note("after " + std::to_string(line.tokens.size()) +
               " generated tokens no token satisfies both the "
               "constraint and the other settings (e.g. min_new_tokens forbids the EOS the constraint needs, or "
               "logit_bias / suppress_tokens remove every allowed token)");
      }
    }
    // A row that ended on EOS, or follows a refused candidate, is left as it is: it is never used.
    recent_.push_back(std::move(line));
    if (recent_.size() > kRecent) recent_.erase(recent_.begin(), recent_.end() - kRecent);
    return error_.empty();
  }

 private:
  // Lines kept for the next steps: a batch's rows, or a speculative round's positions, several times.
  static constexpr size_t kRecent = 256;

  static std::vector<int32_t> special_ids(const xgrammar::CompiledGrammar& g) {
    auto ids = g.GetTokenizerInfo().GetSpecialTokenIds();
    std::sort(ids.begin(), ids.end());
    return ids;
  }
  bool can_accept(int id) const {
    if (id < 0 || id >= grammar_->GetTokenizerInfo().GetVocabSize()) return false;
    return std::find(stops_.begin(), stops_.end(), id) != stops_.end() ||
           !std::binary_search(special_.begin(), special_.end(), id);
  }

  bool note(std::string what) {
    if (error_.empty()) error_ = std::move(what);
    return false;
  }

  Line line_for(std::span<const int32_t> tokens) {
    // The longest recent line that starts these tokens (the newest first: usually the row's own line).
    const Line* best = nullptr;
    for (auto it = recent_.rbegin(); it != recent_.rend(); ++it) {
      if (it->tokens.size() > tokens.size() || (best && it->tokens.size() <= best->tokens.size())) continue;
      if (std::equal(it->tokens.begin(), it->tokens.end(), tokens.begin())) {
        best = &*it;
        if (best->tokens.size() == tokens.size()) break;
      }
    }
    Line line{std::vector<int>(tokens.begin(), tokens.end()),
              best ? best->matcher.Fork() : xgrammar::GrammarMatcher(*grammar_, stops_), best && best->dead};
    for (size_t i = best ? best->tokens.size() : 0; i < tokens.size(); ++i) {
      const int id = tokens[i];
      if (line.dead || line.matcher.IsTerminated()) continue;  // tokens after the row's EOS are never shown
      // Ids xgrammar rejects with a warning on stderr (special ones, out of range) are rejected here quietly.
      if (can_accept(id) && line.matcher.AcceptToken(id)) continue;
      // Speculative verification runs positions after candidates that the mask at their own position
      // refuses; those positions are never used.
      line.dead = true;
      // In a beam search such a row is a beam carried at -inf score or a finished group's padding: never shown.
      if (!tentative_ && !dead_beams_)
        note("generated token " + std::to_string(i + 1) + " (id " + std::to_string(id) +
             ") breaks the constraint (another setting, e.g. min_new_tokens, logit_bias or suppress_tokens, left "
             "no token the grammar allows)");
    }
    return line;
  }

  mutable std::mutex m_;
  std::shared_ptr<const xgrammar::CompiledGrammar> grammar_;
  std::vector<int> stops_;
  std::vector<int32_t> special_;  // sorted
  int vocab_;
  bool tentative_;
  int prompt_ = 0;
  bool dead_beams_ = false;  // make_grammar_constraint's dead_beams
  std::vector<Line> recent_;
  std::vector<int32_t> bits_;
  std::string error_;
};

class GrammarConstraint : public LogitsProcessor {
 public:
  GrammarConstraint(std::shared_ptr<GrammarState> state, std::shared_ptr<const Tokenizer> tokenizer,
                    const GenerationConfig& config, std::vector<int> stops)
      : state_(std::move(state)), tokenizer_(std::move(tokenizer)), config_(config), stops_(std::move(stops)) {}

  bool needs_ids() const override { return true; }

  // The constraint holds the generated text; the prompt is context, not matched.
  void on_prompt(const mx::array& ids) override { state_->start(ids.ndim() == 2 ? ids.shape(1) : 0); }

  // The CPU path: the mask is filled when the step runs, from the ids it receives, so building the next
  // step never waits for this one's token (the decode loops stay pipelined).
  std::optional<RowKernel> row_kernel(int vocab, int num_ids) override {
    state_->raise_pending();
    if (vocab != state_->vocab() || num_ids < state_->prompt()) return std::nullopt;  // apply() checks and says
    auto st = state_;
    return RowKernel([st](std::span<float> logits, std::span<const int32_t> ids) { st->mask_row(logits, ids); });
  }

  // The device path: the ids are read on the host and the mask is applied as one op.
  mx::array apply(const mx::array& logits, const mx::array& ids) override {
    state_->raise_pending();
    if (logits.ndim() != 2) fail("grammar", "logits must be [rows, vocabulary]");
    const int width = logits.shape(1);
    if (width != state_->vocab()) {
      // Built without the model (speculative tracks know only the tokenizer): recompile for the width of
      // the logits, which may exceed the tokenizer's vocabulary.
      if (width < tokenizer_->vocab_size()) fail("grammar", "logits narrower than the vocabulary");
      state_->retarget(
          std::make_shared<const xgrammar::CompiledGrammar>(compile(*compiler_for(tokenizer_, width, stops_), config_)),
          width);
    }
    const int rows = logits.shape(0);
    if (ids.ndim() != 2 || ids.shape(0) != rows || ids.shape(1) < state_->prompt())
      fail("grammar", "the constraint needs every row's ids, prompt first");
    auto host = mx::astype(ids, mx::int32);
    host.eval();
    const int len = host.shape(1);
    std::vector<float> mask(static_cast<size_t>(rows) * width, 0.0f);
    for (int r = 0; r < rows; ++r)
      state_->mask_row(std::span<float>(mask.data() + static_cast<size_t>(r) * width, width),
                       std::span<const int32_t>(host.data<int32_t>() + static_cast<size_t>(r) * len, len));
    state_->raise_pending();
    return mx::add(logits, mx::array(mask.begin(), {rows, width}, mx::float32));
  }

  void raise_pending() override { state_->raise_pending(); }

  std::unique_ptr<LogitsProcessor> clone() const override {
    return std::make_unique<GrammarConstraint>(state_->copy(), tokenizer_, config_, stops_);
  }

 private:
  std::shared_ptr<GrammarState> state_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  GenerationConfig config_;
  std::vector<int> stops_;
};

}  // namespace

bool wants_grammar(const GenerationConfig& c) {
  return c.json_schema.has_value() || c.json_object || c.regex.has_value() || c.grammar.has_value();
}

std::unique_ptr<LogitsProcessor> make_grammar_constraint(const GenerationConfig& config,
                                                         std::shared_ptr<const Tokenizer> tokenizer, int vocab_size,
                                                         bool tentative_ids, bool dead_beams) {
  if (!tokenizer) fail("generate", "structured output needs the model's tokenizer");
  const std::vector<int> stops = config.eos_token_id.value_or(std::vector<int>{});
  if (stops.empty()) fail("generate", "structured output needs an EOS token to end on (the model defines none)");
  for (int id : stops)
    if (id < 0 || id >= vocab_size)
      fail("generate", "EOS token id " + std::to_string(id) + " is outside the vocabulary");
  vocab_size = std::max(vocab_size, tokenizer->vocab_size());
  auto compiler = compiler_for(tokenizer, vocab_size, stops);
  auto grammar = std::make_shared<const xgrammar::CompiledGrammar>(compile(*compiler, config));
  auto state = std::make_shared<GrammarState>(std::move(grammar), stops, vocab_size, tentative_ids);
  state->set_dead_beams(dead_beams);
  return std::make_unique<GrammarConstraint>(std::move(state), std::move(tokenizer), config, stops);
}

}  // namespace mlxgp
