// Named extra parameters on a model (persona vectors, soft prompts): `model["_persona_v"] = v`.
// Hooks refer to them by key, so a vector can be swapped without rebuilding the hooks; they are
// saved and loaded as safetensors beside (never inside) the checkpoint.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <mlx/array.h>

namespace mlxgp {

class ExtraParams {
 public:
  // `params[key] = array` assigns; reading a missing key throws [params].
  class Ref {
   public:
    Ref(ExtraParams& owner, std::string key) : owner_(owner), key_(std::move(key)) {}
    Ref& operator=(const mlx::core::array& value) {
      owner_.set(key_, value);
      return *this;
    }
    operator mlx::core::array() const { return owner_.get(key_); }

   private:
    ExtraParams& owner_;
    std::string key_;
  };
  Ref operator[](const std::string& key) { return Ref(*this, key); }

  void set(const std::string& key, const mlx::core::array& value);
  // Throws [params] "no extra parameter 'key'" when absent.
  const mlx::core::array& get(const std::string& key) const;
  bool has(const std::string& key) const { return items_.count(key) > 0; }
  void erase(const std::string& key) { items_.erase(key); }
  std::vector<std::string> keys() const;
  const std::map<std::string, mlx::core::array>& items() const { return items_; }

  // Writes every parameter to a safetensors file atomically (a reader never sees half a file).
  void save(const std::string& path) const;
  // Adds (or replaces) the parameters stored in a safetensors file; throws [params] on a bad file.
  void load(const std::string& path);

 private:
  std::map<std::string, mlx::core::array> items_;
};

}  // namespace mlxgp
