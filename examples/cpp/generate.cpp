// A program outside the mlxgp tree, built against the installed package (find_package(mlxgp)):
//   generate_example [MODEL [PROMPT [MAX_NEW_TOKENS]]]
// MODEL is "default", an HF / MLX folder or a .gguf file. Prints the text as it streams, then one line
// of statistics; errors are one line "[component] message" and exit code 2.
#include <cstdio>
#include <iostream>
#include <string>

#include <mlxgp/mlxgp.h>

int main(int argc, char** argv) {
  const std::string model_path = argc > 1 ? argv[1] : "default";
  const std::string prompt = argc > 2 ? argv[2] : "The capital of France is";
  try {
    mlxgp::LoadedModel loaded = mlxgp::load(model_path);
    if (!loaded.tokenizer) mlxgp::fail("example", model_path + " has no tokenizer");
    mlxgp::GenerationConfig config;
    config.max_new_tokens = argc > 3 ? std::stoi(argv[3]) : 16;
    auto ids = loaded.tokenizer->encode(prompt);
    auto result = mlxgp::generate(*loaded.model, loaded.tokenizer, ids, config,
                                  [](int, const std::string& text) { std::cout << text << std::flush; });
    const auto& seq = result.sequences.at(0);
    std::cout << "\n[" << seq.token_ids.size() << " tokens, finish_reason " << mlxgp::to_string(seq.finish_reason)
              << ", mlxgp " << mlxgp::version() << "]\n";
    return 0;
  } catch (const mlxgp::Error& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }
}
