#include "milter/log.h"

#include <syslog.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <mutex>

namespace logging {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
std::atomic<bool> g_syslog{false};
std::mutex g_stderr_mutex;

const char* LevelName(Level level) {
  switch (level) {
    case Level::kError: return "error";
    case Level::kWarning: return "warning";
    case Level::kInfo: return "info";
    case Level::kDebug: return "debug";
  }
  return "?";
}

int Facility(const std::string& name) {
  static const std::pair<const char*, int> kFacilities[] = {
      {"mail", LOG_MAIL},     {"daemon", LOG_DAEMON}, {"user", LOG_USER},
      {"local0", LOG_LOCAL0}, {"local1", LOG_LOCAL1}, {"local2", LOG_LOCAL2},
      {"local3", LOG_LOCAL3}, {"local4", LOG_LOCAL4}, {"local5", LOG_LOCAL5},
      {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7}};
  for (const auto& [n, f] : kFacilities) {
    if (name == n) return f;
  }
  return LOG_MAIL;
}

}  // namespace

void Init(const std::string& level_name, const std::string& target, const std::string& facility) {
  Level level = Level::kInfo;
  if (level_name == "error") level = Level::kError;
  if (level_name == "warning") level = Level::kWarning;
  if (level_name == "debug") level = Level::kDebug;
  g_level = static_cast<int>(level);
  const bool use_syslog = target == "syslog";
  if (use_syslog) openlog("fcgi-milter", LOG_PID | LOG_NDELAY, Facility(facility));
  g_syslog = use_syslog;
}

bool Enabled(Level level) {
  return static_cast<int>(level) <= g_level.load();
}

void Write(Level level, const char* format, ...) {
  char raw[2048];
  va_list args;
  va_start(args, format);
  int n = vsnprintf(raw, sizeof raw, format, args);
  va_end(args);
  if (n < 0) return;
  size_t len = static_cast<size_t>(n) < sizeof raw ? static_cast<size_t>(n) : sizeof raw - 1;
  std::string line;
  line.reserve(len + 16);
  // Control characters and bytes that are not part of valid UTF-8 (a script's garbage, an
  // 8-bit header) are escaped, so a line stays one readable line.
  for (size_t i = 0; i < len;) {
    const auto c = static_cast<unsigned char>(raw[i]);
    size_t seq = c < 0x80           ? 1
                 : (c >> 5) == 0x6  ? 2
                 : (c >> 4) == 0xE  ? 3
                 : (c >> 3) == 0x1E ? 4
                                    : 0;
    bool valid = seq != 0 && i + seq <= len && !(c < 0x20 || c == 0x7f) && c != 0xC0 && c != 0xC1;
    for (size_t k = 1; valid && k < seq; ++k) {
      valid = (static_cast<unsigned char>(raw[i + k]) & 0xC0) == 0x80;
    }
    if (valid) {
      line.append(raw + i, seq);
      i += seq;
      continue;
    }
    char esc[5];
    std::snprintf(esc, sizeof esc, "\\x%02x", c);
    line += esc;
    i += 1;
  }
  if (static_cast<size_t>(n) >= sizeof raw) line += "...";
  if (g_syslog) {
    static const int kPriority[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    syslog(kPriority[static_cast<int>(level)], "%s", line.c_str());
    return;
  }
  std::lock_guard<std::mutex> lock(g_stderr_mutex);
  std::fprintf(stderr, "fcgi-milter: %s: %s\n", LevelName(level), line.c_str());
}

}  // namespace logging
