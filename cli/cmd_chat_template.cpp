// `mlxgp chat-template`: renders a chat template for given conversations, for scripts and the
// parity tests (which compare it with transformers' apply_chat_template). --messages-jsonl renders
// many conversations in one process.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include <mlx/mlx.h>
#include <nlohmann/json.hpp>

#include "args.h"
#include "commands.h"
#include "files.h"
#include "mlxgp/chat_template.h"
#include "mlxgp/error.h"
#include "mlxgp/loader.h"
#include "mlxgp/paths.h"
#include "mlxgp/tokenizer.h"

namespace mlxgp::cli {

namespace {

using ojson = nlohmann::ordered_json;

ojson parse_json(const std::string& text, const std::string& where) {
  try {
    return ojson::parse(text);
  } catch (const std::exception& e) {
    fail("cli", where + " is not valid JSON: " + e.what());
  }
}

// A conversation is a JSON array of messages, or an object {"messages": [...], <extra variables>}
// whose other keys become template variables (e.g. enable_thinking, tools).
struct Conversation {
  ojson messages, extra = ojson::object();
};

Conversation split(const ojson& conv) {
  if (conv.is_array()) return {conv};
  if (!conv.is_object() || !conv.contains("messages"))
    fail("cli", "a conversation must be a JSON array of messages or an object with \"messages\"");
  Conversation c{conv["messages"], conv};
  c.extra.erase("messages");
  return c;
}

// --template-file's template, else the model's: its "tool_use" one when the conversation passes tools
// (transformers' get_chat_template).
std::string render_one(const std::optional<std::string>& file_source, const Tokenizer* tok, const ojson& conv,
                       bool gen_prompt, const SpecialTokens& st) {
  Conversation c = split(conv);
  bool tools = c.extra.contains("tools") && !c.extra["tools"].is_null();
  std::string source = file_source ? *file_source : tok->select_chat_template("", tools);
  return apply_chat_template(source, c.messages, gen_prompt, st, c.extra);
}

}  // namespace

int run_chat_template(const std::vector<std::string>& argv) {
  Args a("chat-template", "render a chat template like transformers' apply_chat_template(tokenize=False)");
  a.option("template-file", "the Jinja chat template (default: the chat template of --model)")
      .option("model",
              "take the template and special tokens from this model's tokenizer: \"default\", a GGUF "
              "file, or a folder with tokenizer.json")
      .option("messages-json", "a JSON file: one conversation; prints the rendered text")
      .option("messages-jsonl",
              "a file with one conversation per line; prints one JSON string per line "
              "(or {\"error\": message} where the template raised)")
      .option("no-generation-prompt", "render with add_generation_prompt=False", false)
      .option("bos", "the bos_token string (default: unset)")
      .option("eos", "the eos_token string (default: unset)");
  if (!a.parse(argv)) return 0;
  std::optional<std::string> source;  // --template-file's
  SpecialTokens st;
  std::shared_ptr<Tokenizer> tok;
  if (auto m = a.get("model")) {
    tok = load_tokenizer(*m);
    st = tok->special_tokens();
    if (!a.has("template-file") && tok->named_chat_templates().empty() && tok->chat_template().empty())
      fail("chat_template", "model '" + *m + "' has no chat template");
  }
  if (auto f = a.get("template-file")) source = read_file(*f);
  else if (!a.has("model")) fail("cli", "give --template-file or --model");
  if (auto b = a.get("bos")) st.bos_token = *b;
  if (auto e = a.get("eos")) st.eos_token = *e;
  bool gen_prompt = !a.has("no-generation-prompt");
  if (a.has("messages-json") == a.has("messages-jsonl"))
    fail("cli", "give exactly one of --messages-json and --messages-jsonl");
  // Report template syntax errors before any conversation.
  if (source) ChatTemplate::parse(*source);
  else if (tok->named_chat_templates().empty()) ChatTemplate::parse(tok->chat_template());
  else
    for (const auto& [name, named] : tok->named_chat_templates()) ChatTemplate::parse(named);
  if (auto f = a.get("messages-json")) {
    std::cout << render_one(source, tok.get(), parse_json(read_file(*f), *f), gen_prompt, st);
    return 0;
  }
  std::istringstream lines(read_file(*a.get("messages-jsonl")));
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    ojson conv = parse_json(line, "line " + std::to_string(n));
    ojson out;
    try {
      out = render_one(source, tok.get(), conv, gen_prompt, st);
    } catch (const Error& e) {
      if (e.component() != "chat_template") throw;
      out = ojson{{"error", e.what()}};
    }
    std::cout << out.dump(-1, ' ', false, ojson::error_handler_t::replace) << "\n";
  }
  return 0;
}

}  // namespace mlxgp::cli
