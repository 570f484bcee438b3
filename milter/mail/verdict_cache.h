// A bounded cache of validate verdicts, so that a dictionary attack (or a busy sender mailing
// the same recipients) does not cost one PHP request per RCPT. Entries live for a TTL, the least
// recently used one goes first when the cache is full. Only the script's own judgement is
// cached: an accept or a reject; never a tempfail, never a backend failure.
// Thread-safety: all methods may be called from any thread (one mutex).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "milter/mail/decision.h"

namespace mail {

class VerdictCache {
 public:
  using Clock = std::chrono::steady_clock;

  explicit VerdictCache(size_t max_entries) : max_entries_(max_entries) {}

  // The key of a recipient as a sender asks for it: the recipient as given, and the sender's
  // domain (lower-cased; "" for the null sender), since a script may answer by sender domain.
  static std::string Key(const std::string& recipient, const std::string& mail_from);

  // The cached verdict, if one is there and not expired at `now`.
  std::optional<Verdict> Find(const std::string& key, Clock::time_point now = Clock::now());
  // Keeps `verdict` until now + ttl, if it may be cached (accept or reject from the script) and
  // ttl is positive. Returns whether it was kept.
  bool Store(const std::string& key, const Verdict& verdict, std::chrono::seconds ttl,
             Clock::time_point now = Clock::now());

  size_t size() const;

  // Concurrent misses for one key ask the script once. Lead(key) returns true when no lookup for
  // key is in flight: the caller asks the script, stores the verdict, then calls Land(key).
  // Otherwise it waits until that lookup lands (or `deadline`) and returns false: the caller
  // tries Find again, and asks the script itself only if the answer was not cacheable.
  bool Lead(const std::string& key, Clock::time_point deadline);
  void Land(const std::string& key);

 private:
  struct Entry {
    Verdict verdict;
    Clock::time_point expires;
    std::list<std::string>::iterator age;  // position in lru_
  };
  const size_t max_entries_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Entry> entries_;
  std::list<std::string> lru_;  // most recently used first
  std::condition_variable landed_;
  std::unordered_set<std::string> in_flight_;  // keys a caller is asking the script about
};

}  // namespace mail
