// `mlxgp tokenize` and `mlxgp detokenize`: the tokenizer on its own, for scripts and the parity
// tests (which compare it with HF tokenizers). --lines does a whole file in one process.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <mlx/mlx.h>
#include <nlohmann/json.hpp>

#include "args.h"
#include "commands.h"
#include "files.h"
#include "mlxgp/error.h"
#include "mlxgp/loader.h"
#include "mlxgp/paths.h"
#include "mlxgp/tokenizer.h"

namespace mlxgp::cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// --tokenizer FILE (a tokenizer.json), else the tokenizer of --model (weights are not read).
std::shared_ptr<Tokenizer> tokenizer_for(const Args& args) {
  if (auto t = args.get("tokenizer")) return Tokenizer::from_files(*t);
  return load_tokenizer(args.get("model").value_or("default"));
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> lines;
  size_t at = 0;
  while (at < s.size()) {
    size_t nl = s.find('\n', at);
    if (nl == std::string::npos) nl = s.size();
    lines.push_back(s.substr(at, nl - at));
    at = nl + 1;
  }
  return lines;
}

void add_model_options(Args& a) {
  a.option("model", "\"default\", a GGUF file, or a folder with tokenizer.json (default: default)")
      .option("tokenizer", "a tokenizer.json file (overrides --model)");
}

}  // namespace

int run_tokenize(const std::vector<std::string>& argv) {
  Args a("tokenize", "print the token ids of a text");
  add_model_options(a);
  a.option("text", "the text to encode")
      .option("file", "read the text from a file")
      .option("lines", "with --file: encode each line on its own, one JSON array per line", false)
      .option("jsonl", "with --file: each line is a JSON string to encode (texts may hold newlines)", false)
      .option("no-special-tokens", "do not add the post-processor's special tokens (BOS/EOS)", false)
      .option("ids-only", "print only the ids as one JSON array (the default)", false)
      .option("json", "print {\"ids\": [...], \"tokens\": [...]}", false)
      .option("report-speed", "print the encode time and MB/s (encoding only) on stderr", false);
  if (!a.parse(argv)) return 0;
  if (a.has("text") == a.has("file")) fail("cli", "give exactly one of --text or --file");
  if ((a.has("lines") || a.has("jsonl")) && !a.has("file")) fail("cli", "--lines and --jsonl need --file");
  auto tok = tokenizer_for(a);
  bool special = !a.has("no-special-tokens");
  bool as_json = a.has("json") && !a.has("ids-only");
  double seconds = 0;
  size_t bytes = 0, tokens = 0;
  auto emit = [&](const std::string& text) {
    auto t0 = std::chrono::steady_clock::now();
    auto ids = tok->encode(text, special);
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    bytes += text.size();
    tokens += ids.size();
    if (!as_json) {
      std::cout << json(ids).dump() << "\n";
      return;
    }
    json toks = json::array();
    for (int id : ids) toks.push_back(tok->id_to_token(id));
    std::cout << json{{"ids", ids}, {"tokens", toks}}.dump() << "\n";
  };
  if (a.has("text")) {
    emit(*a.get("text"));
  } else if (a.has("lines")) {
    for (const auto& line : split_lines(read_file(*a.get("file")))) emit(line);
  } else if (a.has("jsonl")) {
    for (const auto& line : split_lines(read_file(*a.get("file")))) {
      std::string text;
      try {
        text = json::parse(line).get<std::string>();
      } catch (const json::exception& e) {
        fail("cli", std::string("--jsonl lines must be JSON strings: ") + e.what());
      }
      emit(text);
    }
  } else {
    emit(read_file(*a.get("file")));
  }
  if (a.has("report-speed"))
    std::cerr << "encode: " << bytes << " bytes -> " << tokens << " tokens in " << seconds << " s ("
              << (seconds > 0 ? bytes / seconds / 1e6 : 0.0) << " MB/s)\n";
  return 0;
}

int run_detokenize(const std::vector<std::string>& argv) {
  Args a("detokenize", "print the text of token ids");
  add_model_options(a);
  a.option("ids", "comma-separated token ids, e.g. 1,2,3")
      .option("file", "a file of JSON arrays of ids, one per line; prints one JSON string per line")
      .option("skip-special-tokens", "leave special tokens out of the text", false)
      .option("stream", "decode through the streaming detokenizer; prints the JSON array of chunks", false);
  if (!a.parse(argv)) return 0;
  if (a.has("ids") == a.has("file")) fail("cli", "give exactly one of --ids or --file");
  auto tok = tokenizer_for(a);
  bool skip = a.has("skip-special-tokens");
  bool stream = a.has("stream");
  auto decode = [&](const std::vector<int>& ids) -> json {
    if (!stream) return tok->decode(ids, skip);
    StreamingDetokenizer sd(tok, skip);
    json chunks = json::array();
    for (int id : ids) chunks.push_back(sd.push(id));
    chunks.push_back(sd.flush());
    return chunks;
  };
  if (a.has("ids")) {
    auto ids = a.get_int_list("ids").value_or(std::vector<int>{});
    json out = decode(ids);
    if (stream) std::cout << out.dump() << "\n";
    else std::cout << out.get<std::string>();
    return 0;
  }
  for (const auto& line : split_lines(read_file(*a.get("file")))) {
    std::vector<int> ids;
    try {
      ids = json::parse(line).get<std::vector<int>>();
    } catch (const json::exception& e) {
      fail("cli", std::string("--file lines must be JSON arrays of integers: ") + e.what());
    }
    std::cout << decode(ids).dump() << "\n";
  }
  return 0;
}

}  // namespace mlxgp::cli
