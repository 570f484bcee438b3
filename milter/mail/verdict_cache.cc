// The validate verdict cache; see verdict_cache.h.
#include "milter/mail/verdict_cache.h"

#include <utility>

namespace mail {

std::string VerdictCache::Key(const std::string& recipient, const std::string& mail_from) {
  const size_t at = mail_from.rfind('@');
  std::string domain = at == std::string::npos ? std::string() : mail_from.substr(at + 1);
  for (char& c : domain) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  // NUL cannot occur in an address the MTA hands over: the two parts cannot run together.
  return recipient + std::string(1, '\0') + domain;
}

std::optional<Verdict> VerdictCache::Find(const std::string& key, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  if (it->second.expires <= now) {
    lru_.erase(it->second.age);
    entries_.erase(it);
    return std::nullopt;
  }
  lru_.splice(lru_.begin(), lru_, it->second.age);
  return it->second.verdict;
}

bool VerdictCache::Store(const std::string& key, const Verdict& verdict, std::chrono::seconds ttl,
                         Clock::time_point now) {
  const bool cacheable = !verdict.backend_failure && (verdict.action == Verdict::Action::kAccept ||
                                                      verdict.action == Verdict::Action::kReject);
  if (!cacheable || ttl.count() <= 0 || max_entries_ == 0) return false;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = entries_.find(key);
  if (it != entries_.end()) {
    lru_.erase(it->second.age);
    entries_.erase(it);
  }
  while (entries_.size() >= max_entries_ && !lru_.empty()) {
    entries_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(key);
  entries_.emplace(key, Entry{verdict, now + ttl, lru_.begin()});
  return true;
}

size_t VerdictCache::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_.size();
}

bool VerdictCache::Lead(const std::string& key, Clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (in_flight_.insert(key).second) return true;
  landed_.wait_until(lock, deadline, [&] { return in_flight_.count(key) == 0; });
  return false;
}

void VerdictCache::Land(const std::string& key) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    in_flight_.erase(key);
  }
  landed_.notify_all();
}

}  // namespace mail
