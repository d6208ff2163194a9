// ApiError: an OpenAI error object with its HTTP status; and the constant-time API key check.
#include <cctype>
#include <cstddef>

#include "mlxgp/server.h"

namespace mlxgp::server {

namespace {

std::string default_type(int status) {
  if (status == 401) return "authentication_error";
  if (status == 404) return "not_found_error";
  if (status == 429) return "rate_limit_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

}  // namespace

ApiError::ApiError(int status, std::string message, std::string param, std::string type, std::string code)
    : std::runtime_error(std::move(message)),
      status_(status),
      param_(std::move(param)),
      type_(type.empty() ? default_type(status) : std::move(type)),
      code_(std::move(code)) {}

nlohmann::json ApiError::body() const {
  nlohmann::json e = {{"message", what()}, {"type", type_}, {"param", nullptr}, {"code", nullptr}};
  if (!param_.empty()) e["param"] = param_;
  if (!code_.empty()) e["code"] = code_;
  return {{"error", e}};
}

bool bearer_matches(const std::string& header, const std::string& key) {
  // RFC 7235 section 2.1: the scheme is case-insensitive, then one or more spaces.
  static const std::string kScheme = "bearer";
  if (header.size() <= kScheme.size() || header[kScheme.size()] != ' ') return false;
  for (size_t i = 0; i < kScheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(header[i])) != kScheme[i]) return false;
  const size_t start = header.find_first_not_of(' ', kScheme.size());
  const std::string given = start == std::string::npos ? std::string() : header.substr(start);
  // Constant time over the key: every byte is compared whatever the earlier ones were.
  unsigned char diff = given.size() == key.size() ? 0 : 1;
  for (size_t i = 0; i < key.size(); ++i)
    diff |= static_cast<unsigned char>(key[i] ^ (i < given.size() ? given[i] : 0));
  return diff == 0;
}

}  // namespace mlxgp::server
