// GenerationConfig: JSON load/save, CLI text, validation and printing, all driven by the one field
// list in GenerationConfig::for_each_field. Per-type behaviour lives in the small codecs below.
#include "mlxgp/generation_config.h"

#include "mlxgp/cache_options.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <sstream>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "generation/hf_fields.h"
#include "mlxgp/error.h"

namespace mlxgp {

using nlohmann::json;

namespace {

std::string show(const json& j) {
  std::string s = j.dump();
  return s.size() > 40 ? s.substr(0, 40) + "..." : s;
}

[[noreturn]] void bad_value(const char* name, const char* expected, const std::string& got) {
  fail("config", std::string("field '") + name + "' expects " + expected + ", got " + got);
}

// ---- JSON -> value
int json_int(const json& j, const char* name) {
  if (j.is_number_integer() || j.is_number_unsigned()) {
    auto v = j.get<long long>();
    if (v >= INT32_MIN && v <= INT32_MAX) return static_cast<int>(v);
  } else if (j.is_number_float()) {
    // HF configs sometimes store integers as 2.0; accept exact integers only.
    double d = j.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 2147483647.0) return static_cast<int>(d);
  }
  if (j.is_number_integer() || j.is_number_unsigned() ||
      (j.is_number_float() && std::isfinite(j.get<double>()) && j.get<double>() == std::floor(j.get<double>())))
    fail("config", std::string("field '") + name + "' is out of range (" +
                       (show(j).rfind('-', 0) == 0 ? "min -2147483648" : "max 2147483647") + "), got " + show(j));
  bad_value(name, "an integer", show(j));
}
void from_json_value(const json& j, int& out, const char* name) { out = json_int(j, name); }
void from_json_value(const json& j, bool& out, const char* name) {
  if (!j.is_boolean()) bad_value(name, "true or false", show(j));
  out = j.get<bool>();
}
void from_json_value(const json& j, double& out, const char* name) {
  if (!j.is_number()) bad_value(name, "a number", show(j));
  out = j.get<double>();
}
void from_json_value(const json& j, uint64_t& out, const char* name) {
  if (j.is_number_unsigned() || (j.is_number_integer() && j.get<long long>() >= 0)) {
    out = j.get<uint64_t>();
    return;
  }
  bad_value(name, "a non-negative integer", show(j));
}
void from_json_value(const json& j, std::vector<int>& out, const char* name) {
  // HF allows an int or a list of ints (eos_token_id).
  out.clear();
  if (j.is_array()) {
    for (auto& e : j) out.push_back(json_int(e, name));
  } else {
    out.push_back(json_int(j, name));
  }
}
void from_json_value(const json& j, std::vector<std::vector<int>>& out, const char* name) {
  // HF bad_words_ids: a list of lists of token ids.
  if (!j.is_array()) bad_value(name, "a list of lists of token ids", show(j));
  out.clear();
  for (auto& seq : j) {
    if (!seq.is_array()) bad_value(name, "a list of lists of token ids", show(j));
    out.emplace_back();
    for (auto& e : seq) out.back().push_back(json_int(e, name));
  }
}
void from_json_value(const json& j, std::vector<double>& out, const char* name) {
  if (!j.is_array()) bad_value(name, "a list of numbers", show(j));
  out.clear();
  for (auto& e : j) {
    if (!e.is_number()) bad_value(name, "a list of numbers", show(j));
    out.push_back(e.get<double>());
  }
}
void from_json_value(const json& j, SequenceBias& out, const char* name) {
  // HF sequence_bias as JSON: [[[token ids], bias], ...]
  const char* expected = "a list of [[token ids], bias] pairs";
  if (!j.is_array()) bad_value(name, expected, show(j));
  out.clear();
  for (auto& e : j) {
    if (!e.is_array() || e.size() != 2 || !e[0].is_array() || !e[1].is_number()) bad_value(name, expected, show(j));
    std::vector<int> ids;
    for (auto& id : e[0]) ids.push_back(json_int(id, name));
    out.push_back({ids, e[1].get<double>()});
  }
}
void from_json_value(const json& j, LogitBias& out, const char* name) {
  // OpenAI's {"token id": bias} object, or a list of [id, bias] pairs.
  const char* expected = "an object {\"token id\": bias} or a list of [id, bias] pairs";
  out.clear();
  if (j.is_object()) {
    for (auto& [key, bias] : j.items()) {
      if (!bias.is_number()) bad_value(name, expected, show(j));
      int id = 0;
      auto [p, ec] = std::from_chars(key.data(), key.data() + key.size(), id);
      if (key.empty() || ec != std::errc() || p != key.data() + key.size()) bad_value(name, expected, show(j));
      out.push_back({id, bias.get<double>()});
    }
  } else if (j.is_array()) {
    for (auto& e : j) {
      if (!e.is_array() || e.size() != 2 || !e[1].is_number()) bad_value(name, expected, show(j));
      out.push_back({json_int(e[0], name), e[1].get<double>()});
    }
  } else {
    bad_value(name, expected, show(j));
  }
}
void from_json_value(const json& j, ForceWords& out, const char* name) {
  // HF force_words_ids: [[ids], ...] (each list a phrase) or [[[ids], [ids]], ...] (alternatives).
  const char* expected = "a list of token id lists, or of lists of alternative token id lists";
  if (!j.is_array()) bad_value(name, expected, show(j));
  out.clear();
  for (auto& c : j) {
    if (!c.is_array()) bad_value(name, expected, show(j));
    out.emplace_back();
    bool disjunctive = !c.empty() && c[0].is_array();
    if (!disjunctive) {
      out.back().emplace_back();
      for (auto& e : c) out.back().back().push_back(json_int(e, name));
      continue;
    }
    for (auto& alt : c) {
      if (!alt.is_array()) bad_value(name, expected, show(j));
      out.back().emplace_back();
      for (auto& e : alt) out.back().back().push_back(json_int(e, name));
    }
  }
}
void from_json_value(const json& j, std::vector<std::string>& out, const char* name) {
  // HF stop_strings: a string or a list of strings.
  out.clear();
  if (j.is_string()) {
    out.push_back(j.get<std::string>());
    return;
  }
  if (!j.is_array()) bad_value(name, "a string or a list of strings", show(j));
  for (auto& e : j) {
    if (!e.is_string()) bad_value(name, "a string or a list of strings", show(j));
    out.push_back(e.get<std::string>());
  }
}
void from_json_value(const json& j, std::string& out, const char* name) {
  if (!j.is_string()) bad_value(name, "a string", show(j));
  out = j.get<std::string>();
}
void from_json_value(const json& j, EarlyStopping& out, const char* name) {
  // HF: True, False or "never".
  if (j.is_boolean()) out = j.get<bool>() ? EarlyStopping::True : EarlyStopping::False;
  else if (j == "never") out = EarlyStopping::Never;
  else bad_value(name, "true, false or \"never\"", show(j));
}
template <class T>
void from_json_value(const json& j, std::optional<T>& out, const char* name) {
  T v{};
  from_json_value(j, v, name);
  out = v;
}

// ---- CLI text -> value
template <class Int>
[[noreturn]] void out_of_range(const char* name, const std::string& got) {
  const std::string limit = got.rfind('-', 0) == 0 ? "min " + std::to_string(std::numeric_limits<Int>::min())
                                                   : "max " + std::to_string(std::numeric_limits<Int>::max());
  fail("config", std::string("field '") + name + "' is out of range (" + limit + "), got " + got);
}
template <class Int>
Int parse_integer(const std::string& s, const char* name) {
  Int v{};
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (!s.empty() && p == s.data() + s.size() && ec == std::errc::result_out_of_range) out_of_range<Int>(name, s);
  // Unsigned fields: a well-formed negative integer is out of range, not "not an integer".
  if constexpr (std::is_unsigned_v<Int>) {
    if (s.size() > 1 && s[0] == '-' && s.find_first_not_of("0123456789", 1) == std::string::npos)
      out_of_range<Int>(name, s);
  }
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) bad_value(name, "an integer", "'" + s + "'");
  return v;
}
void from_text(const std::string& s, int& out, const char* name) { out = parse_integer<int>(s, name); }
void from_text(const std::string& s, uint64_t& out, const char* name) { out = parse_integer<uint64_t>(s, name); }
void from_text(const std::string& s, bool& out, const char* name) {
  if (s == "1" || s == "true") out = true;
  else if (s == "0" || s == "false") out = false;
  else bad_value(name, "true or false", "'" + s + "'");
}
void from_text(const std::string& s, double& out, const char* name) {
  try {
    size_t pos = 0;
    out = std::stod(s, &pos);
    if (pos == s.size()) return;
  } catch (const std::exception&) {
  }
  bad_value(name, "a number", "'" + s + "'");
}
void from_text(const std::string& s, std::vector<int>& out, const char* name) {
  out.clear();
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(parse_integer<int>(item, name));
}
void from_text(const std::string& s, std::vector<std::vector<int>>& out, const char* name) {
  // "1,2;3" -> {{1,2},{3}}
  out.clear();
  std::stringstream ss(s);
  std::string group;
  while (std::getline(ss, group, ';')) {
    out.emplace_back();
    from_text(group, out.back(), name);
  }
}
void from_text(const std::string& s, std::vector<double>& out, const char* name) {
  out.clear();
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    double v = 0;
    from_text(item, v, name);
    out.push_back(v);
  }
}
void from_text(const std::string& s, SequenceBias& out, const char* name) {
  // "1,2:-1.5;3:2" -> {{{1,2},-1.5},{{3},2}}
  out.clear();
  std::stringstream ss(s);
  std::string group;
  while (std::getline(ss, group, ';')) {
    auto colon = group.rfind(':');
    if (colon == std::string::npos) bad_value(name, "ids:bias pairs like 1,2:-1.5;3:2", "'" + s + "'");
    std::vector<int> ids;
    double bias = 0;
    from_text(group.substr(0, colon), ids, name);
    from_text(group.substr(colon + 1), bias, name);
    out.push_back({ids, bias});
  }
}
void from_text(const std::string& s, LogitBias& out, const char* name) {
  // "123:-100,7:2.5"
  out.clear();
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    auto colon = item.rfind(':');
    if (colon == std::string::npos) bad_value(name, "id:bias pairs like 123:-100,7:2.5", "'" + s + "'");
    int id = parse_integer<int>(item.substr(0, colon), name);
    double bias = 0;
    from_text(item.substr(colon + 1), bias, name);
    out.push_back({id, bias});
  }
}
void from_text(const std::string& s, ForceWords& out, const char* name) {
  // "1,2;3" -> two phrasal constraints; "1,2|4;3" -> the first has alternatives [1,2] and [4].
  out.clear();
  std::stringstream ss(s);
  std::string group;
  while (std::getline(ss, group, ';')) {
    out.emplace_back();
    std::stringstream alts(group);
    std::string alt;
    while (std::getline(alts, alt, '|')) {
      out.back().emplace_back();
      from_text(alt, out.back().back(), name);
    }
  }
}
void from_text(const std::string& s, std::vector<std::string>& out, const char* name) {
  // A JSON list when it starts with '[', otherwise the one stop string itself.
  if (!s.empty() && s[0] == '[') {
    json j;
    try {
      j = json::parse(s);
    } catch (const json::exception&) {  // parse errors and number overflow (out_of_range)
      bad_value(name, "a string or a JSON list of strings", "'" + s + "'");
    }
    from_json_value(j, out, name);
    return;
  }
  out = {s};
}
void from_text(const std::string& s, std::string& out, const char*) { out = s; }
void from_text(const std::string& s, EarlyStopping& out, const char* name) {
  if (s == "1" || s == "true") out = EarlyStopping::True;
  else if (s == "0" || s == "false") out = EarlyStopping::False;
  else if (s == "never") out = EarlyStopping::Never;
  else bad_value(name, "true, false or never", "'" + s + "'");
}
template <class T>
void from_text(const std::string& s, std::optional<T>& out, const char* name) {
  T v{};
  from_text(s, v, name);
  out = v;
}

// ---- value -> JSON / numbers for bounds checks
template <class T>
json to_json_value(const T& v) {
  return json(v);
}
json to_json_value(const EarlyStopping& v) {
  return v == EarlyStopping::Never ? json("never") : json(v == EarlyStopping::True);
}
json to_json_value(const LogitBias& v) {
  json out = json::object();
  for (auto& [id, bias] : v) out[std::to_string(id)] = bias;
  return out;
}
template <class T>
json to_json_value(const std::optional<T>& v) {
  if constexpr (std::is_same_v<T, LogitBias>) return v ? to_json_value(*v) : json(nullptr);
  else return v ? json(*v) : json(nullptr);
}
template <class T>
std::vector<double> numbers(const T& v) {
  if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, EarlyStopping>) return {};
  else return {static_cast<double>(v)};
}
std::vector<double> numbers(const std::vector<int>& v) { return {v.begin(), v.end()}; }
std::vector<double> numbers(const std::vector<double>& v) { return v; }
std::vector<double> numbers(const SequenceBias& v) {  // the token ids (biases are checked in validate)
  std::vector<double> out;
  for (auto& [ids, bias] : v) out.insert(out.end(), ids.begin(), ids.end());
  return out;
}
std::vector<double> numbers(const LogitBias& v) {  // the token ids (biases are checked in validate)
  std::vector<double> out;
  for (auto& [id, bias] : v) out.push_back(id);
  return out;
}
std::vector<double> numbers(const ForceWords& v) {
  std::vector<double> out;
  for (auto& c : v)
    for (auto& alt : c) out.insert(out.end(), alt.begin(), alt.end());
  return out;
}
std::vector<double> numbers(const std::vector<std::string>&) { return {}; }
std::vector<double> numbers(const std::string&) { return {}; }
std::vector<double> numbers(const EarlyStopping&) { return {}; }
std::vector<double> numbers(const std::vector<std::vector<int>>& v) {
  std::vector<double> out;
  for (auto& seq : v) out.insert(out.end(), seq.begin(), seq.end());
  return out;
}
template <class T>
std::vector<double> numbers(const std::optional<T>& v) {
  return v ? numbers(*v) : std::vector<double>{};
}

template <class T>
constexpr bool is_flag_type() {
  return std::is_same_v<T, bool>;
}

std::string format_number(double x) {
  std::ostringstream os;
  os << x;
  return os.str();
}

std::string bounds_text(const FieldBounds& b) {
  bool has_lo = std::isfinite(b.lo), has_hi = std::isfinite(b.hi);
  if (has_lo && has_hi && b.lo == b.hi) return "be " + format_number(b.lo);
  if (has_lo && has_hi)
    return std::string("be in ") + (b.lo_open ? "(" : "[") + format_number(b.lo) + ", " + format_number(b.hi) +
           (b.hi_open ? ")" : "]");
  if (has_lo) return std::string("be ") + (b.lo_open ? "> " : ">= ") + format_number(b.lo);
  return std::string("be ") + (b.hi_open ? "< " : "<= ") + format_number(b.hi);
}

// llama.cpp's samplers (docs/samplers.md): where each applies, and the modes it cannot follow.
void validate_llama_samplers(const GenerationConfig& config) {
  if (config.dry_sequence_breakers.size() > 64)
    fail("config", "field 'dry_sequence_breakers' takes at most 64 strings");
  for (auto& s : config.dry_sequence_breakers) {
    if (s.empty()) fail("config", "field 'dry_sequence_breakers' must not contain an empty string");
    // llama.cpp truncates longer breakers (with a warning); refused here rather than changed.
    if (s.size() > 40)
      fail("config", "field 'dry_sequence_breakers' strings must be at most 40 bytes (llama.cpp's limit)");
  }
  const bool speculative = config.use_speculative || config.prompt_lookup_num_tokens.has_value();
  auto sampling_only = [&](const char* name) {
    if (!config.do_sample) fail("config", std::string("field '") + name + "' needs do_sample=true (it is a sampler)");
  };
  if (config.top_n_sigma > 0) {
    sampling_only("top_n_sigma");
    // Beam sampling needs min_tokens_to_keep candidates (transformers' warpers keep them); llama.cpp's
    // top-n-sigma has no such floor.
    if (config.num_beams > 1) fail("config", "field 'top_n_sigma' cannot be combined with num_beams > 1");
  }
  if (config.xtc_probability > 0) {
    sampling_only("xtc_probability");
    // XTC draws a coin per row and step from the request's RNG: beams and speculative verification
    // would have to replay those draws per hypothesis / per rejected position.
    if (config.num_beams > 1) fail("config", "field 'xtc_probability' cannot be combined with num_beams > 1");
    if (speculative)
      fail("config", "field 'xtc_probability' cannot be combined with speculative or prompt-lookup decoding");
  }
  if (config.mirostat == 0) return;
  sampling_only("mirostat");
  // mu follows the probability of each sampled token of one sequence.
  if (config.num_beams > 1) fail("config", "field 'mirostat' cannot be combined with num_beams > 1");
  if (speculative) fail("config", "field 'mirostat' cannot be combined with speculative or prompt-lookup decoding");
  // llama.cpp's mirostat chain is temperature then mirostat: it ignores the truncation samplers.
  const std::pair<bool, std::string> others[] = {
      {config.top_k != 0, "top_k=" + std::to_string(config.top_k) + " (set top_k=0)"},
      {config.top_p < 1.0, "top_p < 1"},
      {config.min_p.has_value() && *config.min_p > 0, "min_p > 0"},
      {config.typical_p < 1.0, "typical_p < 1"},
      {config.epsilon_cutoff > 0, "epsilon_cutoff > 0"},
      {config.eta_cutoff > 0, "eta_cutoff > 0"},
      {config.top_n_sigma > 0, "top_n_sigma > 0"},
      {config.xtc_probability > 0, "xtc_probability > 0"}};
  for (auto& [on, what] : others)
    if (on)
      fail("config",
           "field 'mirostat' replaces the truncation samplers (llama.cpp's chain is temperature then "
           "mirostat) and cannot be combined with " +
               what);
}

}  // namespace

GenerationConfig::GenerationConfig() {
  for_each_field(*this, [](auto& field, const char*, auto def, const char*, const FieldBounds&) { field = def; });
}

std::vector<std::string> apply_generation_config_json(GenerationConfig& config, const std::string& json_text,
                                                      ConfigSource source) {
  json doc;
  try {
    doc = json::parse(json_text);
  } catch (const json::exception& e) {  // parse errors and number overflow (out_of_range 406)
    std::string what = e.what();
    if (auto p = what.find("parse error"); p != std::string::npos) what = what.substr(p);
    fail("config", "malformed generation config JSON: " + what);
  }
  if (!doc.is_object()) fail("config", "generation config JSON must be an object, got " + show(doc));

  std::vector<std::string> warnings;
  for (auto& [key, value] : doc.items()) {
    bool known = false;
    GenerationConfig::for_each_field(
        config, [&](auto& field, const char* name, auto def, const char*, const FieldBounds&) {
          if (known || key != name) return;
          known = true;
          if (value.is_null()) field = def;  // HF: null means "not set"
          // A schema may be given as the JSON document itself (OpenAI response_format, vLLM guided_json), in
          // its own key order: properties are generated in the order the schema lists them.
          else if (key == "json_schema" && (value.is_object() || value.is_boolean()))
            from_json_value(json(nlohmann::ordered_json::parse(json_text)["json_schema"].dump()), field, name);
          else from_json_value(value, field, name);
        });
    if (known) continue;
    switch (classify_hf_field(key, value)) {
      case HfField::Ignored:
      case HfField::UnimplementedAtDefault:
        break;
      case HfField::Unimplemented:
        if (source == ConfigSource::User) fail("config", "field '" + key + "' is not implemented yet");
        warnings.push_back("[config] warning: the model's generation config sets '" + key + "' = " + show(value) +
                           ", which is not implemented yet; ignoring it");
        break;
      case HfField::Unknown:
        if (source == ConfigSource::User) fail("config", "unknown field '" + key + "'");
        warnings.push_back("[config] warning: the model's generation config has an unknown field '" + key +
                           "'; ignoring it");
        break;
    }
  }
  return warnings;
}

void set_generation_config_field(GenerationConfig& config, const std::string& key, const std::string& text) {
  bool known = false;
  GenerationConfig::for_each_field(config, [&](auto& field, const char* name, auto, const char*, const FieldBounds&) {
    if (known || key != name) return;
    known = true;
    from_text(text, field, name);
  });
  if (!known) fail("config", "unknown field '" + key + "'");
}

std::vector<GenerationFieldInfo> generation_config_fields() {
  std::vector<GenerationFieldInfo> out;
  const GenerationConfig c;
  GenerationConfig::for_each_field(
      c, [&](const auto& field, const char* name, auto def, const char* help, const FieldBounds&) {
        json d = to_json_value(def);
        using T = std::decay_t<decltype(field)>;
        out.push_back({name, help, d.is_null() ? "" : d.dump(), is_flag_type<T>()});
      });
  return out;
}

void validate(const GenerationConfig& config) {
  GenerationConfig::for_each_field(
      config, [](const auto& field, const char* name, auto, const char*, const FieldBounds& b) {
        for (double x : numbers(field)) {
          if (!std::isfinite(x))
            fail("config", std::string("field '") + name + "' must be a finite number, got " + format_number(x));
          bool ok = (b.lo_open ? x > b.lo : x >= b.lo) && (b.hi_open ? x < b.hi : x <= b.hi);
          // The processors compute in float32, where a tiny positive value is 0 (a division by it, inf).
          if (ok && b.lo_open && b.lo == 0 && static_cast<float>(x) == 0.0f)
            fail("config", std::string("field '") + name + "' must be > 0, got " + format_number(x) +
                               ", which is 0 in float32 (the precision the processors compute in)");
          if (ok) continue;
          fail("config", std::string("field '") + name + "' must " + bounds_text(b) + ", got " + format_number(x));
        }
      });
  // Shapes the field list cannot express (transformers raises on these in the processors).
  if (config.bad_words_ids) {
    if (config.bad_words_ids->empty())
      fail("config", "field 'bad_words_ids' must be a non-empty list of token id lists");
    for (auto& seq : *config.bad_words_ids)
      if (seq.empty()) fail("config", "field 'bad_words_ids' must not contain an empty list");
  }
  if (config.sequence_bias) {
    if (config.sequence_bias->empty()) fail("config", "field 'sequence_bias' must be a non-empty list");
    for (auto& [ids, bias] : *config.sequence_bias) {
      if (ids.empty()) fail("config", "field 'sequence_bias' must not contain an empty token list");
      if (!std::isfinite(bias)) fail("config", "field 'sequence_bias' biases must be finite numbers");
    }
  }
  if (config.logit_bias)
    for (auto& [id, bias] : *config.logit_bias)
      if (!std::isfinite(bias) && bias != -INFINITY)
        fail("config", "field 'logit_bias' biases must be finite numbers or -inf");
  if (config.force_words_ids) {
    if (config.force_words_ids->empty()) fail("config", "field 'force_words_ids' must be a non-empty list");
    for (auto& c : *config.force_words_ids) {
      if (c.empty()) fail("config", "field 'force_words_ids' must not contain an empty constraint");
      for (auto& alt : c)
        if (alt.empty()) fail("config", "field 'force_words_ids' must not contain an empty token list");
    }
  }
  if (config.stop_strings) {
    if (config.stop_strings->empty()) fail("config", "field 'stop_strings' must be a non-empty list");
    for (auto& s : *config.stop_strings)
      if (s.empty()) fail("config", "field 'stop_strings' must not contain an empty string");
  }
  // transformers GenerationConfig.validate: several sequences need sampling or beams.
  if (config.num_return_sequences > 1 && !config.do_sample && config.num_beams == 1)
    fail("config",
         "field 'num_return_sequences' > 1 needs do_sample=true or num_beams > 1 (greedy search would "
         "return identical sequences)");
  if (config.num_beams > 1 && config.num_return_sequences > config.num_beams)
    fail("config", "field 'num_return_sequences' (" + std::to_string(config.num_return_sequences) +
                       ") must be <= num_beams (" + std::to_string(config.num_beams) + ")");
  if (config.num_beam_groups > 1) {
    if (config.num_beam_groups > config.num_beams || config.num_beams % config.num_beam_groups != 0)
      fail("config", "field 'num_beam_groups' must divide num_beams (" + std::to_string(config.num_beams) + ")");
    if (config.do_sample)
      fail("config", "field 'num_beam_groups' > 1 (diverse beam search) cannot be combined with do_sample");
  }
  if (config.diversity_penalty > 0 && config.num_beam_groups == 1)
    fail("config", "field 'diversity_penalty' needs num_beam_groups > 1");
  if (config.force_words_ids && config.num_beams > 1 && (config.do_sample || config.num_beam_groups > 1))
    fail("config", "field 'force_words_ids' with num_beams > 1 needs plain beam search (no do_sample, no beam groups)");
  if (config.use_speculative) {
    if (config.draft_model.has_value() == config.draft_layers.has_value())
      fail("config", "use_speculative needs exactly one of draft_model and draft_layers");
    if (config.prompt_lookup_num_tokens)
      fail("config", "use_speculative and prompt_lookup_num_tokens cannot be combined");
  } else if (config.draft_model || config.draft_layers) {
    fail("config", "draft_model / draft_layers need use_speculative=true");
  }
  if (config.max_matching_ngram_size && !config.prompt_lookup_num_tokens)
    fail("config", "field 'max_matching_ngram_size' needs prompt_lookup_num_tokens");
  // Settings of one strategy or cache given without it (their defaults aside) are refused, not ignored.
  const GenerationConfig defaults;
  if (!config.use_speculative && config.num_draft_tokens != defaults.num_draft_tokens)
    fail("config", "field 'num_draft_tokens' needs use_speculative (prompt lookup drafts prompt_lookup_num_tokens)");
  if (!config.use_speculative && config.speculative_exact_match)
    fail("config", "field 'speculative_exact_match' needs use_speculative");
  if (!config.max_kv_size && config.kv_keep != defaults.kv_keep)
    fail("config", "field 'kv_keep' needs max_kv_size (the rotating cache)");
  if (!config.kv_bits && config.kv_group_size != defaults.kv_group_size)
    fail("config", "field 'kv_group_size' needs kv_bits (the quantized cache)");
  if ((config.use_speculative || config.prompt_lookup_num_tokens) && config.num_beams > 1)
    fail("config", "speculative and prompt-lookup decoding cannot be combined with num_beams > 1");
  if ((config.use_speculative || config.prompt_lookup_num_tokens) && config.num_return_sequences > 1)
    fail("config", "speculative and prompt-lookup decoding return one sequence (num_return_sequences must be 1)");
  if (config.max_kv_size && config.kv_bits)
    fail("config", "max_kv_size (rotating cache) cannot be combined with kv_bits (quantized cache)");
  if (config.kv_bits && *config.kv_bits != 2 && *config.kv_bits != 3 && *config.kv_bits != 4 && *config.kv_bits != 5 &&
      *config.kv_bits != 6 && *config.kv_bits != 8)
    fail("config", "field 'kv_bits' must be 2, 3, 4, 5, 6 or 8, got " + std::to_string(*config.kv_bits));
  if (config.quantized_kv_start && !config.kv_bits) fail("config", "field 'quantized_kv_start' needs kv_bits");
  if (const auto& d = config.kv_cache_dtype) {
    if (!kv_cache_dtype_named(*d))
      fail("config", "field 'kv_cache_dtype' must be float16, bfloat16 or float32, got '" + *d + "'");
    if (config.kv_bits || config.max_kv_size)
      fail("config",
           std::string("field 'kv_cache_dtype' sets the standard cache's dtype and cannot be combined with ") +
               (config.kv_bits ? "kv_bits" : "max_kv_size"));
  }
  if (auto& e = config.exponential_decay_length_penalty) {
    if (e->size() != 2 || (*e)[0] != std::floor((*e)[0]) || (*e)[0] < 0 || (*e)[0] > 1e9)
      fail("config",
           "field 'exponential_decay_length_penalty' must be [start_index, decay_factor] with an integer "
           "start_index >= 0");
  }
  // Structured outputs: one constraint; the strategies that do not carry a matcher yet say so.
  const int constraints =
      config.json_schema.has_value() + config.json_object + config.regex.has_value() + config.grammar.has_value();
  if (constraints > 1) fail("config", "json_schema, json_object, regex and grammar are exclusive: set one");
  for (auto [value, name] :
       {std::pair{&config.json_schema, "json_schema"}, {&config.regex, "regex"}, {&config.grammar, "grammar"}})
    if (*value && (*value)->empty()) fail("config", std::string("field '") + name + "' must not be empty");
  if (constraints == 1) {
    if (config.eos_token_id && config.eos_token_id->empty())
      fail("config", "structured output needs an EOS token to end on (it cannot be combined with ignoring EOS)");
  }
  validate_llama_samplers(config);
  // Cross-field rules. transformers' TemperatureLogitsWarper rejects 0 when sampling.
  if (config.do_sample && config.temperature == 0.0)
    fail("config", "field 'temperature' must be > 0 when do_sample is true (use do_sample=false for greedy)");
  // logits / temperature: below 1e-20 even a logit of 3.4e18 overflows float32 to inf, where transformers'
  // sampling raises (torch.multinomial); such a temperature samples greedily anyway.
  if (config.do_sample && config.temperature > 0.0 && config.temperature < 1e-20)
    fail("config", "field 'temperature' must be at least 1e-20 when sampling, got " +
                       format_number(config.temperature) +
                       " (logits / temperature overflows float32; use do_sample=false for greedy)");
}

json to_json(const GenerationConfig& config) {
  json out = json::object();
  GenerationConfig::for_each_field(config, [&](const auto& field, const char* name, auto, const char*,
                                               const FieldBounds&) { out[name] = to_json_value(field); });
  return out;
}

std::string describe(const GenerationConfig& config) {
  std::ostringstream os;  // field-list order, not JSON's sorted order
  GenerationConfig::for_each_field(config,
                                   [&](const auto& field, const char* name, auto, const char*, const FieldBounds&) {
                                     os << name << " = " << to_json_value(field).dump() << "\n";
                                   });
  return os.str();
}

}  // namespace mlxgp
