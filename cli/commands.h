// Subcommands of the mlxgp CLI. Each takes the arguments after its name and returns an exit code;
// errors are thrown as mlxgp::Error and turned into one stderr line by main().
#pragma once

#include <string>
#include <vector>

namespace mlxgp::cli {

int run_generate(const std::vector<std::string>& args);        // cmd_generate.cpp
int run_chat(const std::vector<std::string>& args);            // cmd_chat.cpp
int run_logits(const std::vector<std::string>& args);          // cmd_logits.cpp
int run_steer(const std::vector<std::string>& args);           // cmd_steer.cpp
int run_train(const std::vector<std::string>& args);           // cmd_train.cpp
int run_loss(const std::vector<std::string>& args);            // cmd_train.cpp
int run_convert(const std::vector<std::string>& args);         // cmd_convert.cpp
int run_tokenize(const std::vector<std::string>& args);        // cmd_tokenize.cpp
int run_detokenize(const std::vector<std::string>& args);      // cmd_tokenize.cpp
int run_chat_template(const std::vector<std::string>& args);   // cmd_chat_template.cpp
int run_process_logits(const std::vector<std::string>& args);  // cmd_process_logits.cpp
int run_cache_prompt(const std::vector<std::string>& args);    // cmd_cache_prompt.cpp
int run_serve(const std::vector<std::string>& args);           // cmd_serve.cpp

}  // namespace mlxgp::cli
