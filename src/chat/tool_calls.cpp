// Tool-call parsing of chat replies, with vLLM's parsers as the reference for what a call is: its
// hermes parser (<tool_call> JSON blocks, an unclosed last block taken to the end), its llama3_json parser
// (";"-separated JSON objects with "parameters" or "arguments", optionally after <|python_tag|>) and its
// tool_choice "required" / named forms. Arguments are re-serialized as Python's json.dumps(...,
// ensure_ascii=False) writes them, as vLLM does.
#include "mlxgp/tool_calls.h"

#include <algorithm>
#include <optional>

#include "chat/value.h"
#include "mlxgp/error.h"

namespace mlxgp {

using ojson = nlohmann::ordered_json;

namespace {

const std::string kCallOpen = "<tool_call>";
const std::string kCallClose = "</tool_call>";
const std::string kPythonTag = "<|python_tag|>";

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

bool all_space(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return is_space(c); });
}

// The longest end of `text` that is a proper beginning of `tag` (it may still become the tag).
size_t partial_suffix(const std::string& text, const std::string& tag) {
  for (size_t k = std::min(text.size(), tag.size() - 1); k > 0; --k)
    if (text.compare(text.size() - k, k, tag, 0, k) == 0) return k;
  return 0;
}

std::string python_dumps(const ojson& v) { return chat::to_json(chat::from_json(v), -1, ", ", ": ", false, false); }

std::optional<ojson> parse_json(const std::string& text) {
  try {
    return ojson::parse(text);
  } catch (const ojson::exception&) {
    return std::nullopt;
  }
}

// A Hermes block's JSON: {"name": "...", "arguments": ...} (vLLM reads both keys; other keys are ignored).
std::optional<ToolCall> hermes_call(const std::string& body) {
  auto j = parse_json(body);
  if (!j || !j->is_object() || !j->contains("name") || !(*j)["name"].is_string() || !j->contains("arguments"))
    return std::nullopt;
  return ToolCall{(*j)["name"].get<std::string>(), python_dumps((*j)["arguments"])};
}

// A Llama 3 call: {"name": "...", "parameters": ...} or with "arguments" instead, not both (vLLM).
std::optional<ToolCall> llama3_call(const ojson& j) {
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) return std::nullopt;
  const bool params = j.contains("parameters"), args = j.contains("arguments");
  if (params == args) return std::nullopt;
  return ToolCall{j["name"].get<std::string>(), python_dumps(j[params ? "parameters" : "arguments"])};
}

// The end (one past the closing brace) of the JSON object that starts at text[begin] == '{', or npos.
size_t object_end(const std::string& text, size_t begin) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = begin; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{') {
      ++depth;
    } else if (c == '}' && --depth == 0) {
      return i + 1;
    }
  }
  return std::string::npos;
}

size_t skip_space(const std::string& text, size_t i) {
  while (i < text.size() && is_space(text[i])) ++i;
  return i;
}

}  // namespace

ToolCallFormat parse_tool_call_format(const std::string& name) {
  if (name == "hermes") return ToolCallFormat::Hermes;
  if (name == "llama3") return ToolCallFormat::Llama3;
  if (name == "none") return ToolCallFormat::None;
  fail("tool_calls", "unknown tool-call format '" + name + "' (hermes, llama3 or none)");
}

const char* tool_call_format_name(ToolCallFormat format) {
  switch (format) {
    case ToolCallFormat::Hermes:
      return "hermes";
    case ToolCallFormat::Llama3:
      return "llama3";
    default:
      return "none";
  }
}

ToolCallFormat tool_call_format_for_template(const std::string& t) {
  if (t.find(kCallOpen) != std::string::npos) return ToolCallFormat::Hermes;
  if (t.find("<|start_header_id|>") != std::string::npos &&
      (t.find(kPythonTag) != std::string::npos || t.find("\"parameters\"") != std::string::npos))
    return ToolCallFormat::Llama3;
  return ToolCallFormat::None;
}

ToolCallParser::ToolCallParser(ToolCallRules rules) : rules_(std::move(rules)) {}

std::vector<ToolCallEvent> ToolCallParser::push(const std::string& text) {
  std::vector<ToolCallEvent> out;
  buf_ += text;
  run(false, out);
  return out;
}

std::vector<ToolCallEvent> ToolCallParser::finish() {
  std::vector<ToolCallEvent> out;
  run(true, out);
  pending_ws_.clear();  // whitespace after the last call is dropped
  return out;
}

void ToolCallParser::emit_text(const std::string& text, std::vector<ToolCallEvent>& out) {
  if (text.empty()) return;
  std::string t = text;
  if (after_call_) {
    // Whitespace after a call is the separator before the next call or the end, not content.
    pending_ws_ += text;
    if (all_space(pending_ws_)) return;
    t = std::move(pending_ws_);
    pending_ws_.clear();
    after_call_ = false;
  }
  if (!out.empty() && !out.back().is_call) {
    out.back().text += t;
  } else {
    ToolCallEvent e;
    e.text = std::move(t);
    out.push_back(std::move(e));
  }
}

void ToolCallParser::emit_call(const std::string& name, const std::string& arguments, std::vector<ToolCallEvent>& out) {
  ++seen_;
  pending_ws_.clear();
  after_call_ = true;
  if (rules_.max_calls > 0 && calls_ >= rules_.max_calls) return;  // parallel_tool_calls false
  ToolCallEvent e;
  e.is_call = true;
  e.index = calls_++;
  e.name = name;
  e.arguments = arguments;
  out.push_back(std::move(e));
}

void ToolCallParser::run(bool final, std::vector<ToolCallEvent>& out) {
  switch (rules_.kind) {
    case ToolCallRules::Kind::Named: {
      // The whole reply is the arguments (vLLM returns the constrained text as they are).
      if (!named_started_ && (!buf_.empty() || final)) {
        named_started_ = true;
        ToolCallEvent e;
        e.is_call = true;
        e.index = calls_++;
        e.name = rules_.name;
        e.arguments = std::move(buf_);
        out.push_back(std::move(e));
      } else if (!buf_.empty()) {
        ToolCallEvent e;
        e.is_call = true;
        e.index = 0;
        e.arguments = std::move(buf_);
        out.push_back(std::move(e));
      }
      buf_.clear();
      return;
    }
    case ToolCallRules::Kind::Array: {
      if (!final) return;  // one JSON value: decided at the end
      std::vector<ToolCall> calls;
      auto j = parse_json(buf_);
      bool ok = j && j->is_array() && !j->empty();
      if (ok)
        for (auto& item : *j) {
          if (!item.is_object() || !item.contains("name") || !item["name"].is_string()) {
            ok = false;
            break;
          }
          const ojson params = item.contains("parameters") ? item["parameters"] : ojson::object();
          calls.push_back({item["name"].get<std::string>(), python_dumps(params)});
        }
      if (!ok) {
        emit_text(buf_, out);  // not calls (e.g. cut by max_tokens): the text stays
      } else {
        for (auto& c : calls) emit_call(c.name, c.arguments, out);
      }
      buf_.clear();
      return;
    }
    case ToolCallRules::Kind::Format:
      if (rules_.format == ToolCallFormat::Hermes) return run_hermes(final, out);
      if (rules_.format == ToolCallFormat::Llama3) return run_llama3(final, out);
      emit_text(buf_, out);
      buf_.clear();
      return;
  }
}

void ToolCallParser::run_hermes(bool final, std::vector<ToolCallEvent>& out) {
  while (true) {
    if (!in_call_) {
      const size_t p = buf_.find(kCallOpen);
      if (p != std::string::npos) {
        emit_text(buf_.substr(0, p), out);
        buf_.erase(0, p + kCallOpen.size());
        in_call_ = true;
        continue;
      }
      // Bytes that may begin "<tool_call>" wait for the next piece.
      const size_t keep = final ? 0 : partial_suffix(buf_, kCallOpen);
      emit_text(buf_.substr(0, buf_.size() - keep), out);
      buf_.erase(0, buf_.size() - keep);
      return;
    }
    const size_t e = buf_.find(kCallClose);
    if (e == std::string::npos && !final) return;
    // vLLM's regex <tool_call>(.*?)</tool_call>|<tool_call>(.*): an unclosed last block runs to the end.
    const size_t body_end = e == std::string::npos ? buf_.size() : e;
    const std::string body = buf_.substr(0, body_end);
    const std::string raw = kCallOpen + body + (e == std::string::npos ? "" : kCallClose);
    buf_.erase(0, e == std::string::npos ? buf_.size() : e + kCallClose.size());
    in_call_ = false;
    if (auto call = hermes_call(body)) {
      emit_call(call->name, call->arguments, out);
    } else {
      emit_text(raw, out);  // a malformed call stays text (vLLM)
    }
  }
}

void ToolCallParser::run_llama3(bool final, std::vector<ToolCallEvent>& out) {
  if (llama_state_ == 0) {
    // Undecided: calls are a reply that begins (after whitespace and an optional <|python_tag|>) with '{'.
    size_t i = skip_space(buf_, 0);
    bool more = i == buf_.size();  // only whitespace so far
    if (!more && buf_.compare(i, std::string::npos, kPythonTag, 0, buf_.size() - i) == 0 &&
        buf_.size() - i < kPythonTag.size()) {
      more = true;  // a beginning of <|python_tag|>
    } else if (!more && buf_.compare(i, kPythonTag.size(), kPythonTag) == 0) {
      i = skip_space(buf_, i + kPythonTag.size());
      more = i == buf_.size();
    }
    if (more && !final) return;
    llama_state_ = !more && buf_[i] == '{' ? 2 : 1;
  }
  if (llama_state_ == 1) {
    emit_text(buf_, out);
    buf_.clear();
    return;
  }
  if (!final) return;  // JSON calls are decided at the end
  size_t i = skip_space(buf_, 0);
  if (buf_.compare(i, kPythonTag.size(), kPythonTag) == 0) i = skip_space(buf_, i + kPythonTag.size());
  std::vector<ToolCall> calls;
  while (true) {
    const size_t end = i < buf_.size() && buf_[i] == '{' ? object_end(buf_, i) : std::string::npos;
    std::optional<ToolCall> call;
    if (end != std::string::npos)
      if (auto j = parse_json(buf_.substr(i, end - i))) call = llama3_call(*j);
    if (!call) {
      calls.clear();
      break;
    }
    calls.push_back(std::move(*call));
    i = skip_space(buf_, end);
    if (i < buf_.size() && buf_[i] == ';') {
      i = skip_space(buf_, i + 1);
      continue;
    }
    break;
  }
  if (calls.empty()) {
    emit_text(buf_, out);  // not calls: the whole reply stays text (vLLM)
  } else {
    for (auto& c : calls) emit_call(c.name, c.arguments, out);
    emit_text(buf_.substr(i), out);
  }
  buf_.clear();
}

ParsedToolCalls parse_tool_calls(const ToolCallRules& rules, const std::string& text) {
  ToolCallParser parser(rules);
  ParsedToolCalls r;
  auto take = [&](const std::vector<ToolCallEvent>& events) {
    for (auto& e : events) {
      if (!e.is_call) {
        r.content += e.text;
      } else if (e.index >= static_cast<int>(r.calls.size())) {
        r.calls.push_back({e.name, e.arguments});
      } else {
        r.calls[e.index].arguments += e.arguments;
      }
    }
  };
  take(parser.push(text));
  take(parser.finish());
  return r;
}

std::string tool_calls_schema(const ojson& tools, const ToolCallRules& rules) {
  auto parameters = [](const ojson& tool) {
    const ojson& f = tool.at("function");
    if (f.contains("parameters") && !f["parameters"].is_null()) return f["parameters"];
    return ojson{{"type", "object"}, {"properties", ojson::object()}};
  };
  if (!tools.is_array()) fail("tool_calls", "tools must be a list");
  if (rules.kind == ToolCallRules::Kind::Named) {
    for (auto& t : tools)
      if (t.at("function").at("name") == rules.name) return parameters(t).dump();
    fail("tool_calls", "no tool named '" + rules.name + "'");
  }
  if (rules.kind != ToolCallRules::Kind::Array) fail("tool_calls", "only required and named tool choices constrain");
  // vLLM's schema for tool_choice "required"; each tool's $defs move to the top, where its "#/$defs/..."
  // references point once the parameters are nested.
  ojson any_of = ojson::array(), defs = ojson::object();
  for (auto& t : tools) {
    ojson params = parameters(t);
    if (params.is_object() && params.contains("$defs")) {
      for (auto& [k, v] : params["$defs"].items()) {
        if (defs.contains(k) && defs[k] != v)
          fail("tool_calls", "the tools define '$defs/" + k + "' differently; it cannot be shared");
        defs[k] = v;
      }
      params.erase("$defs");
    }
    any_of.push_back(
        ojson{{"properties",
               {{"name", {{"type", "string"}, {"enum", {t.at("function").at("name")}}}}, {"parameters", params}}},
              {"required", {"name", "parameters"}}});
  }
  ojson schema = {{"type", "array"}, {"minItems", 1}};
  if (rules.max_calls > 0) schema["maxItems"] = rules.max_calls;
  schema["items"] = ojson{{"type", "object"}, {"anyOf", any_of}};
  if (!defs.empty()) schema["$defs"] = defs;
  return schema.dump();
}

}  // namespace mlxgp
