// PrefixIndex: items registered under key prefixes, found from a key in time that grows with
// the number of distinct prefix lengths, not with the number of items. The watch hub finds the
// few watchers a change concerns among thousands this way.
//
// Not thread-safe: its owner locks.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

namespace raftnginx::kv {

template <typename Item>  // hashable, compared by ==: a pointer, a shared_ptr
class PrefixIndex {
 public:
  void add(const std::string& prefix, const Item& item) {
    if (by_prefix_[prefix].insert(item).second)
      ++lengths_[prefix.size()];
  }

  void remove(const std::string& prefix, const Item& item) {
    const auto it = by_prefix_.find(prefix);
    if (it == by_prefix_.end() || it->second.erase(item) == 0)
      return;
    if (it->second.empty())
      by_prefix_.erase(it);
    if (--lengths_[prefix.size()] == 0)
      lengths_.erase(prefix.size());
  }

  // Calls f(item) for every item registered under a prefix of `key` (the empty one included).
  // `f` must not add or remove items.
  template <typename F>
  void for_each_match(std::string_view key, F&& f) const {
    for (const auto& [length, count] : lengths_) {
      if (length > key.size())
        break;
      const auto it = by_prefix_.find(std::string(key.substr(0, length)));
      if (it == by_prefix_.end())
        continue;
      for (const Item& item : it->second)
        f(item);
    }
  }

 private:
  std::unordered_map<std::string, std::unordered_set<Item>> by_prefix_;
  std::map<size_t, size_t> lengths_;  // prefix length -> items registered with one that long
};

}  // namespace raftnginx::kv
