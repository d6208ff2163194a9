#include "args.h"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <iostream>
#include <sstream>

#include "mlxgp/error.h"

namespace mlxgp::cli {

Args& Args::option(const std::string& name, const std::string& help, bool takes_value) {
  specs_.push_back({name, Spec{help, takes_value}});
  return *this;
}

bool Args::parse(const std::vector<std::string>& argv) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << usage();
      return false;
    }
    if (a.rfind("--", 0) != 0) fail("cli", "unexpected argument '" + a + "' (see mlxgp " + command_ + " --help)");
    std::string name = a.substr(2), value;
    bool inline_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    const Spec* spec = nullptr;
    for (auto& [n, s] : specs_)
      if (n == name) spec = &s;
    if (!spec) fail("cli", "unknown option --" + name + " for 'mlxgp " + command_ + "'");
    // A switch is on when given: --do-sample=false must not turn it on.
    if (!spec->takes_value && inline_value)
      fail("cli",
           "--" + name + " is a switch and takes no value (give --" + name + " to turn it on, leave it out otherwise)");
    if (spec->takes_value && !inline_value) {
      if (i + 1 >= argv.size()) fail("cli", "--" + name + " needs a value");
      // `--model --prompt Hi`: the next word is one of this command's options, so --model has no value
      // (a value that starts with "--" can still be given as --name=value).
      const std::string& next = argv[i + 1];
      if (next.rfind("--", 0) == 0) {
        const std::string next_name =
            next.substr(2, next.find('=') == std::string::npos ? std::string::npos : next.find('=') - 2);
        bool is_option = next == "--help";
        for (auto& [n, s] : specs_) is_option = is_option || n == next_name;
        if (is_option) fail("cli", "--" + name + " needs a value (got the option " + next + " instead)");
      }
      value = argv[++i];
    }
    if (!spec->takes_value) value = "1";
    values_[name] = value;
  }
  return true;
}

std::optional<std::string> Args::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Args::require(const std::string& name) const {
  auto v = get(name);
  if (!v) fail("cli", "--" + name + " is required");
  return *v;
}

std::optional<long long> Args::get_int(const std::string& name) const {
  auto v = get(name);
  if (!v) return std::nullopt;
  long long out = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (ec == std::errc::result_out_of_range && p == v->data() + v->size())
    fail("cli", "--" + name + " is out of range (" +
                    (v->rfind('-', 0) == 0 ? "min " + std::to_string(INT64_MIN) : "max " + std::to_string(INT64_MAX)) +
                    "), got '" + *v + "'");
  if (ec != std::errc() || p != v->data() + v->size() || v->empty())
    fail("cli", "--" + name + " expects an integer, got '" + *v + "'");
  return out;
}

std::optional<int> Args::get_int32(const std::string& name) const {
  auto v = get_int(name);
  if (!v) return std::nullopt;
  if (*v > INT32_MAX)
    fail("cli", "--" + name + " is out of range (max " + std::to_string(INT32_MAX) + "), got '" + *get(name) + "'");
  if (*v < INT32_MIN)
    fail("cli", "--" + name + " is out of range (min " + std::to_string(INT32_MIN) + "), got '" + *get(name) + "'");
  return static_cast<int>(*v);
}

std::optional<double> Args::get_double(const std::string& name) const {
  auto v = get(name);
  if (!v) return std::nullopt;
  try {
    size_t pos = 0;
    double d = std::stod(*v, &pos);
    if (pos == v->size()) return d;
  } catch (const std::exception&) {
  }
  fail("cli", "--" + name + " expects a number, got '" + *v + "'");
}

std::optional<std::vector<int>> Args::get_int_list(const std::string& name) const {
  auto v = get(name);
  if (!v) return std::nullopt;
  std::vector<int> out;
  std::stringstream ss(*v);
  std::string item;
  while (std::getline(ss, item, ',')) {
    long long x = 0;
    auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), x);
    if (!item.empty() && p == item.data() + item.size() &&
        (ec == std::errc::result_out_of_range || (ec == std::errc() && (x < INT32_MIN || x > INT32_MAX))))
      fail("cli", "--" + name + " value '" + item + "' is out of range (min " + std::to_string(INT32_MIN) + ", max " +
                      std::to_string(INT32_MAX) + ")");
    if (item.empty() || ec != std::errc() || p != item.data() + item.size() || x < INT32_MIN || x > INT32_MAX)
      fail("cli", "--" + name + " expects comma-separated integers, got '" + *v + "'");
    out.push_back(static_cast<int>(x));
  }
  if (out.empty()) fail("cli", "--" + name + " is empty");
  return out;
}

std::string Args::usage() const {
  std::ostringstream os;
  os << "usage: mlxgp " << command_ << " [options]\n" << summary_ << "\n\noptions:\n";
  for (auto& [n, s] : specs_) os << "  --" << n << (s.takes_value ? " VALUE" : "") << "\n      " << s.help << "\n";
  return os.str();
}

std::string Args::canonical(const std::vector<std::string>& except,
                            const std::function<std::string(const std::string&)>& value_text) const {
  std::string out;
  for (auto& [name, value] : values_)
    if (std::find(except.begin(), except.end(), name) == except.end())
      out += name + "=" + (value_text ? value_text(value) : value) + "\n";
  return out;
}

}  // namespace mlxgp::cli
