// The daemon's log: one line per event, to stderr (systemd/journald) or syslog. Control
// characters in a line (CR, LF, NUL from hostile input) are escaped so one event stays one line.
// Thread-safety: all functions may be called from any thread.
#pragma once

#include <string>

#include "config/config.h"

namespace logging {

enum class Level { kError = 0, kWarning = 1, kInfo = 2, kDebug = 3 };

// May be called again (reload).
void Init(config::LogLevel level, config::LogTarget target = config::LogTarget::kStderr,
          config::SyslogFacility facility = config::SyslogFacility::kMail);
bool Enabled(Level level);
void Write(Level level, const char* format, ...) __attribute__((format(printf, 2, 3)));

}  // namespace logging

#define LOG_AT(level, ...)                                               \
  do {                                                                   \
    if (::logging::Enabled(level)) ::logging::Write(level, __VA_ARGS__); \
  } while (0)
#define LOG_ERROR(...) LOG_AT(::logging::Level::kError, __VA_ARGS__)
#define LOG_WARNING(...) LOG_AT(::logging::Level::kWarning, __VA_ARGS__)
#define LOG_INFO(...) LOG_AT(::logging::Level::kInfo, __VA_ARGS__)
#define LOG_DEBUG(...) LOG_AT(::logging::Level::kDebug, __VA_ARGS__)
