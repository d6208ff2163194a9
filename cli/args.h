// Minimal command-line option parser shared by the subcommands: `--name value` and `--flag`.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mlxgp::cli {

class Args {
 public:
  Args(std::string command, std::string summary) : command_(std::move(command)), summary_(std::move(summary)) {}
  // Declares `--name VALUE` (takes_value) or a boolean `--name`.
  Args& option(const std::string& name, const std::string& help, bool takes_value = true);
  // Throws Error("cli", ...) on an unknown option or a missing value. Returns false if --help was
  // given (usage has been printed).
  bool parse(const std::vector<std::string>& argv);

  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::optional<std::string> get(const std::string& name) const;
  std::string require(const std::string& name) const;  // throws [cli] "--name is required"
  // Typed getters: throw [cli] "--name expects an integer, got 'x'".
  std::optional<long long> get_int(const std::string& name) const;
  std::optional<double> get_double(const std::string& name) const;
  // get_int within int32: throws [cli] "--name is out of range (max 2147483647), got 'x'".
  std::optional<int> get_int32(const std::string& name) const;
  // "1,2,3" -> {1,2,3}; throws [cli] on anything else.
  std::optional<std::vector<int>> get_int_list(const std::string& name) const;
  std::string usage() const;
  // Every given option as "name=value" lines, sorted, leaving out `except` (paths that may differ
  // between machines), each value written by `value_text` when given: what the ranks of a distributed run
  // compare at start.
  std::string canonical(const std::vector<std::string>& except = {},
                        const std::function<std::string(const std::string&)>& value_text = {}) const;

 private:
  struct Spec {
    std::string help;
    bool takes_value;
  };
  std::string command_, summary_;
  std::vector<std::pair<std::string, Spec>> specs_;
  std::map<std::string, std::string> values_;
};

}  // namespace mlxgp::cli
