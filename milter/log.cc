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

int Facility(config::SyslogFacility f) {
  using F = config::SyslogFacility;
  switch (f) {
    case F::kMail: return LOG_MAIL;
    case F::kDaemon: return LOG_DAEMON;
    case F::kUser: return LOG_USER;
    case F::kLocal0: return LOG_LOCAL0;
    case F::kLocal1: return LOG_LOCAL1;
    case F::kLocal2: return LOG_LOCAL2;
    case F::kLocal3: return LOG_LOCAL3;
    case F::kLocal4: return LOG_LOCAL4;
    case F::kLocal5: return LOG_LOCAL5;
    case F::kLocal6: return LOG_LOCAL6;
    case F::kLocal7: return LOG_LOCAL7;
  }
  return LOG_MAIL;
}

Level ToLevel(config::LogLevel level) {
  switch (level) {
    case config::LogLevel::kError: return Level::kError;
    case config::LogLevel::kWarning: return Level::kWarning;
    case config::LogLevel::kInfo: return Level::kInfo;
    case config::LogLevel::kDebug: return Level::kDebug;
  }
  return Level::kInfo;
}

}  // namespace

void Init(config::LogLevel level, config::LogTarget target, config::SyslogFacility facility) {
  g_level = static_cast<int>(ToLevel(level));
  const bool use_syslog = target == config::LogTarget::kSyslog;
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
