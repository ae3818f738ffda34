// Objects that are expensive to build and cheap to use, by a key that names everything they
// depend on (op, shapes, types, layouts, parameters): oneDNN primitives, whose creation JIT-compiles
// code, and cuDNN plans, whose algorithm choice asks cuDNN's heuristics. A ResNet meets a few dozen
// distinct keys, so entries are kept for the life of the context.
//
// Not thread-safe: a backend uses it from one thread only (the CPU backend on the JS thread when
// it enqueues, the CUDA backend on the worker when a task runs).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace cr {

class KeyedCache {
 public:
  // The entry for `key`, built by `build()` (which returns a std::shared_ptr<T>) the first time.
  template <typename T, typename Build>
  std::shared_ptr<T> Get(const std::string& key, Build&& build) {
    auto it = entries_.find(key);
    if (it != entries_.end()) return std::static_pointer_cast<T>(it->second);
    std::shared_ptr<T> made = build();
    entries_.emplace(key, made);
    return made;
  }
  size_t Size() const { return entries_.size(); }
  void Clear() { entries_.clear(); }

 private:
  std::unordered_map<std::string, std::shared_ptr<void>> entries_;
};

// Appends integers to a cache key, each followed by ',', the list by ';'.
inline void AppendInts(std::string& key, const std::vector<int64_t>& v) {
  for (int64_t x : v) {
    key += std::to_string(x);
    key += ',';
  }
  key += ';';
}

}  // namespace cr
