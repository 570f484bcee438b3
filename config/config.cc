// Loading the JSON configuration: one table of keys, each with a check that either stores the
// value or explains in one line what was expected and what was found. Every problem is collected.
// nlohmann's exceptions stay inside this file; callers only see LoadResult.
// Thread-safety: no shared state; every function may run concurrently.
#include "config/config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

namespace config {
namespace {

// ordered_json keeps the file's key order, so errors come out in the order the admin reads them.
using Json = nlohmann::ordered_json;

// sun_path holds 108 bytes including the NUL; libmilter refuses a path that leaves no spare byte.
constexpr size_t kMaxFcgiSocketPath = sizeof(sockaddr_un::sun_path) - 1;
constexpr size_t kMaxMilterSocketPath = sizeof(sockaddr_un::sun_path) - 2;
// Guards against `-c /dev/zero` and friends; a real config is a few hundred bytes.
constexpr size_t kMaxFileSize = 4 << 20;

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool HasControlChar(std::string_view s) {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

// A value as the admin would recognise it in the file; long strings are cut at a UTF-8 boundary.
std::string Describe(const Json& v) {
  if (v.is_object()) return "an object";
  if (v.is_array()) return "an array";
  std::string s = v.dump(-1, ' ', false, Json::error_handler_t::replace);
  constexpr size_t kMax = 60;
  if (s.size() > kMax) {
    size_t cut = kMax;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
    s = s.substr(0, cut) + "...";
  }
  return s;
}

std::string Expected(std::string_view what, const Json& v) {
  return "expected " + std::string(what) + ", got " + Describe(v);
}

std::string FormatNumber(double d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", d);
  return buf;
}

// Port number 1..65535 in decimal digits only (no service names: they depend on /etc/services).
bool ParsePort(std::string_view s, int* port) {
  if (s.empty() || s.size() > 5) return false;
  int value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  if (value < 1 || value > 65535) return false;
  *port = value;
  return true;
}

bool IsIpv6Literal(std::string_view s) {
  std::string addr(s.substr(0, s.find('%')));  // a zone id ("%eth0") is not inet_pton's business
  in6_addr out;
  return !addr.empty() && inet_pton(AF_INET6, addr.c_str(), &out) == 1;
}

// Host names and IPv4 literals: letters, digits, '.', '-', '_'. Resolution happens at run time.
bool IsHostName(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_';
  });
}

// Empty when `s` is "host:port" or "[v6]:port"; otherwise what is wrong with it.
std::string CheckHostPort(std::string_view s) {
  std::string_view host;
  std::string_view port;
  if (!s.empty() && s.front() == '[') {
    size_t close = s.find(']');
    if (close == std::string_view::npos) return "an IPv6 address opened with '[' but not closed";
    host = s.substr(1, close - 1);
    if (!IsIpv6Literal(host)) return "'" + std::string(host) + "' is not an IPv6 address";
    if (close + 1 >= s.size() || s[close + 1] != ':') return "missing ':port' after ']'";
    port = s.substr(close + 2);
  } else {
    size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) return "missing ':port'";
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return "an IPv6 address needs brackets, as in [::1]:9000";
    }
    if (!IsHostName(host)) return "'" + std::string(host) + "' is not a host name or address";
  }
  int unused;
  if (!ParsePort(port, &unused)) return "port '" + std::string(port) + "' is not 1..65535";
  return "";
}

std::string CheckAbsolutePath(std::string_view s) {
  if (s.empty() || s.front() != '/') return "not an absolute path";
  if (s.find('\0') != std::string_view::npos) return "contains a NUL byte";
  return "";
}

// --- Per-type readers: store into *out, or return "expected ..., got ..." ---

std::string ReadString(const Json& v, std::string_view what, std::string* out) {
  if (!v.is_string()) return Expected(what, v);
  *out = v.get<std::string>();
  return "";
}

std::string ReadAbsolutePath(const Json& v, bool allow_empty, std::string* out) {
  const char* what = allow_empty ? "an absolute path or \"\"" : "an absolute path";
  if (!v.is_string()) return Expected(what, v);
  std::string s = v.get<std::string>();
  if (!(allow_empty && s.empty()) && !CheckAbsolutePath(s).empty()) return Expected(what, v);
  *out = std::move(s);
  return "";
}

std::string ReadSeconds(const Json& v, double min, double max, double* out) {
  std::string what =
      "a number of seconds between " + FormatNumber(min) + " and " + FormatNumber(max);
  if (!v.is_number()) return Expected(what, v);
  double d = v.get<double>();
  if (!(d >= min && d <= max)) return Expected(what, v);
  *out = d;
  return "";
}

std::string ReadBytes(const Json& v, uint64_t min, uint64_t* out) {
  std::string what = "a whole number of bytes";
  if (min > 0) what += " of at least " + std::to_string(min);
  uint64_t value = 0;
  if (v.is_number_unsigned()) {
    value = v.get<uint64_t>();
  } else if (v.is_number_float()) {
    // 1e6 is a natural way to write a size; accept it when it is a whole number.
    double d = v.get<double>();
    if (!(d >= 0 && d < 18446744073709551616.0) || std::floor(d) != d) return Expected(what, v);
    value = static_cast<uint64_t>(d);
  } else {
    return Expected(what, v);
  }
  if (value < min) return Expected(what, v);
  *out = value;
  return "";
}

// One of a few lower-case words, compared case-insensitively; the canonical word is returned.
std::string ReadChoice(const Json& v, std::initializer_list<const char*> choices,
                       std::string* out) {
  std::string what;
  for (const char* c : choices) {
    if (!what.empty()) what += choices.size() == 2 ? " or " : ", ";
    what += '"' + std::string(c) + '"';
  }
  if (v.is_string()) {
    std::string lower = ToLower(v.get<std::string>());
    for (const char* c : choices) {
      if (lower == c) {
        *out = c;
        return "";
      }
    }
  }
  return Expected(what, v);
}

std::string ReadFailureAction(const Json& v, FailureAction* out) {
  std::string word;
  std::string err = ReadChoice(v, {"tempfail", "accept", "reject"}, &word);
  if (err.empty()) {
    *out = word == "accept"   ? FailureAction::kAccept
           : word == "reject" ? FailureAction::kReject
                              : FailureAction::kTempfail;
  }
  return err;
}

// A user or group name as getpwnam/getgrnam take it; existence is checked at start-up.
std::string ReadName(const Json& v, std::string_view what, std::string* out) {
  if (!v.is_string()) return Expected(what, v);
  std::string s = v.get<std::string>();
  if (HasControlChar(s) || s.find_first_of(" :/") != std::string::npos) return Expected(what, v);
  *out = std::move(s);
  return "";
}

// libmilter's spec, restricted to the unambiguous forms: the prefix is required and an inet
// socket must name its address, so a missing "@HOST" never binds the milter to every interface.
std::string ReadMilterSocket(const Json& v, Config& c) {
  std::string* out = &c.milter_socket;
  constexpr const char* kWhat =
      "\"unix:/absolute/path\", \"local:/absolute/path\", \"inet:PORT@HOST\" or "
      "\"inet6:PORT@HOST\"";
  if (!v.is_string()) return Expected(kWhat, v);
  std::string s = v.get<std::string>();
  size_t colon = s.find(':');
  if (colon == std::string::npos) return Expected(kWhat, v);
  std::string scheme = ToLower(s.substr(0, colon));
  std::string rest = s.substr(colon + 1);
  if (scheme == "unix" || scheme == "local") {
    std::string why = CheckAbsolutePath(rest);
    if (!why.empty()) return Expected(kWhat, v) + " (the path is " + why + ")";
    if (rest.size() > kMaxMilterSocketPath) {
      return "the socket path is " + std::to_string(rest.size()) + " bytes long; at most " +
             std::to_string(kMaxMilterSocketPath) + " fit in a unix socket address";
    }
  } else if (scheme == "inet" || scheme == "inet6") {
    size_t at = rest.find('@');
    if (at == std::string::npos) {
      return Expected(kWhat, v) + " (name the address to listen on, e.g. " + scheme +
             ":8894@127.0.0.1)";
    }
    int port;
    if (!ParsePort(std::string_view(rest).substr(0, at), &port)) {
      return Expected(kWhat, v) + " (port '" + rest.substr(0, at) + "' is not 1..65535)";
    }
    std::string host = rest.substr(at + 1);
    bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
    std::string bare = bracketed ? host.substr(1, host.size() - 2) : host;
    in_addr v4;
    bool ok = scheme == "inet"
                  ? (bracketed ? inet_pton(AF_INET, bare.c_str(), &v4) == 1 : IsHostName(bare))
                  : (IsIpv6Literal(bare) || (!bracketed && IsHostName(bare)));
    if (!ok) return Expected(kWhat, v) + " ('" + host + "' is not a usable host)";
    c.milter_socket_port = port;
    c.milter_socket_host = bare;
    c.milter_socket_path.clear();
  } else {
    return Expected(kWhat, v);
  }
  if (scheme == "unix" || scheme == "local") {
    c.milter_socket_port = 0;
    c.milter_socket_host.clear();
    c.milter_socket_path = rest;
  }
  *out = scheme + ":" + rest;
  return "";
}

std::string ReadSocketMode(const Json& v, int* out) {
  constexpr const char* kWhat = "an octal mode as a string, such as \"0660\"";
  if (!v.is_string()) return Expected(kWhat, v);  // 660 as a number would be read as decimal
  std::string s = v.get<std::string>();
  if (s.empty() || s.size() > 4) return Expected(kWhat, v);
  int mode = 0;
  for (char c : s) {
    if (c < '0' || c > '7') return Expected(kWhat, v);
    mode = mode * 8 + (c - '0');
  }
  if (mode > 0777) return Expected(std::string(kWhat) + " no greater than \"0777\"", v);
  *out = mode;
  return "";
}

// --- The schema ---

using Reader = std::string (*)(const Json&, Config&);

// How Summarize shows the values that are not plain strings or numbers.
std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ", ") + i;
  return out;
}

std::string OctalMode(int mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", mode);
  return text;
}

constexpr const char* kBackendsWhat =
    "an array of backends such as [\"unix:/run/php/php8.2-fpm.sock\", \"tcp:10.0.0.5:9000\"]";

std::string ReadBackends(const Json& v, std::vector<BackendSpec>* out) {
  if (!v.is_array() || v.empty() || v.size() > 64) return Expected(kBackendsWhat, v);
  std::vector<BackendSpec> backends;
  for (const Json& item : v) {
    std::string entry = item.is_string() ? item.get<std::string>() : std::string();
    BackendSpec b;
    std::string why;
    if (entry.rfind("unix:", 0) == 0) {
      b.type = ConnectionType::kUnix;
      b.address = entry.substr(5);
      why = CheckAbsolutePath(b.address);
      if (why.empty() && b.address.size() > kMaxFcgiSocketPath) why = "socket path too long";
    } else if (entry.rfind("tcp:", 0) == 0) {
      b.type = ConnectionType::kTcp;
      b.address = entry.substr(4);
      why = CheckHostPort(b.address);
    } else {
      why = "expected a unix: or tcp: prefix";
    }
    if (!why.empty()) {
      return Expected(kBackendsWhat, v) + " (bad entry " + Describe(item) + ": " + why + ")";
    }
    backends.push_back(std::move(b));
  }
  *out = std::move(backends);
  return std::string();
}

std::string BackendText(const std::vector<BackendSpec>& list) {
  std::string out;
  for (const BackendSpec& b : list) {
    out += (out.empty() ? "" : ", ") +
           std::string(b.type == ConnectionType::kTcp ? "tcp:" : "unix:") + b.address;
  }
  return out;
}

// A route's domain: a host name, or "*." and one; stored lower-case.
std::string CheckRouteDomain(const std::string& domain) {
  std::string_view name = domain;
  if (name.rfind("*.", 0) == 0) name.remove_prefix(2);
  if (name.empty() || name.size() > 253) return "not a domain";
  for (char ch : name) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.';
    if (!ok) return "not a domain (letters, digits, '-' and '.'; '*.' only in front)";
  }
  if (name.front() == '.' || name.back() == '.' || name.find("..") != std::string_view::npos) {
    return "not a domain";
  }
  return "";
}

std::string ReadRoutes(const Json& v, std::vector<Route>* out) {
  constexpr const char* kWhat =
      "an array of routes such as [{\"domains\": [\"example.org\", \"*.example.org\"], "
      "\"fcgi_script_filename_save\": \"/srv/org/save.php\"}]";
  if (!v.is_array() || v.size() > 1000) return Expected(kWhat, v);
  std::vector<Route> routes;
  std::vector<std::string> seen;
  for (size_t i = 0; i < v.size(); ++i) {
    const Json& item = v[i];
    const std::string where = "route " + std::to_string(i + 1) + ": ";
    if (!item.is_object()) return Expected(kWhat, v);
    Route r;
    for (const auto& field : item.items()) {
      const std::string& key = field.key();
      const Json& value = field.value();
      std::string err;
      if (key == "domains") {
        if (!value.is_array() || value.empty()) {
          err = Expected("an array of domains such as [\"example.org\", \"*.example.org\"]", value);
        }
        for (size_t d = 0; err.empty() && d < value.size(); ++d) {
          if (!value[d].is_string()) {
            err = "bad domain " + Describe(value[d]);
            break;
          }
          std::string domain = ToLower(value[d].get<std::string>());
          if (std::string why = CheckRouteDomain(domain); !why.empty()) {
            err = "bad domain " + Describe(value[d]) + ": " + why;
          } else if (std::find(seen.begin(), seen.end(), domain) != seen.end()) {
            err = "domain \"" + domain + "\" is in more than one route";
          } else {
            seen.push_back(domain);
            r.domains.push_back(std::move(domain));
          }
        }
      } else if (key == "fcgi_script_filename_validate") {
        err = ReadAbsolutePath(value, false, &r.fcgi_script_filename_validate);
      } else if (key == "fcgi_script_filename_save") {
        err = ReadAbsolutePath(value, false, &r.fcgi_script_filename_save);
      } else if (key == "fcgi_backends") {
        err = ReadBackends(value, &r.fcgi_backends);
      } else {
        err = "unknown key '" + key +
              "' (a route has domains, fcgi_script_filename_validate, fcgi_script_filename_save, "
              "fcgi_backends)";
      }
      if (!err.empty())
        return where +
               (key == "domains" || err.rfind("unknown", 0) == 0 ? "" : "key '" + key + "': ") +
               err;
    }
    if (r.domains.empty()) return where + "missing key 'domains'";
    routes.push_back(std::move(r));
  }
  *out = std::move(routes);
  return std::string();
}

std::string RouteList(const Config& c) {
  std::string out;
  for (const Route& r : c.routes) {
    if (!out.empty()) out += "; ";
    out += Join(r.domains) + " ->";
    if (!r.fcgi_script_filename_validate.empty())
      out += " validate " + r.fcgi_script_filename_validate;
    if (!r.fcgi_script_filename_save.empty()) out += " save " + r.fcgi_script_filename_save;
    if (!r.fcgi_backends.empty()) out += " via " + BackendText(r.fcgi_backends);
  }
  return out;
}

const char* FailureActionName(FailureAction a) {
  switch (a) {
    case FailureAction::kTempfail: return "tempfail";
    case FailureAction::kAccept: return "accept";
    case FailureAction::kReject: return "reject";
  }
  return "tempfail";
}

// The words of an enum key, in the enum's order; ReadChoice checks the word (any letter case).
template <typename E, size_t N>
using Words = std::array<std::pair<E, const char*>, N>;

constexpr Words<LogLevel, 4> kLogLevels = {{{LogLevel::kError, "error"},
                                            {LogLevel::kWarning, "warning"},
                                            {LogLevel::kInfo, "info"},
                                            {LogLevel::kDebug, "debug"}}};
constexpr Words<LogTarget, 2> kLogTargets = {
    {{LogTarget::kStderr, "stderr"}, {LogTarget::kSyslog, "syslog"}}};
constexpr Words<SyslogFacility, 11> kFacilities = {{{SyslogFacility::kMail, "mail"},
                                                    {SyslogFacility::kDaemon, "daemon"},
                                                    {SyslogFacility::kUser, "user"},
                                                    {SyslogFacility::kLocal0, "local0"},
                                                    {SyslogFacility::kLocal1, "local1"},
                                                    {SyslogFacility::kLocal2, "local2"},
                                                    {SyslogFacility::kLocal3, "local3"},
                                                    {SyslogFacility::kLocal4, "local4"},
                                                    {SyslogFacility::kLocal5, "local5"},
                                                    {SyslogFacility::kLocal6, "local6"},
                                                    {SyslogFacility::kLocal7, "local7"}}};

// As ReadChoice, into the enum value of the word.
template <typename E, size_t N>
std::string ReadEnum(const Json& v, const Words<E, N>& words, E* out) {
  std::string what;
  for (const auto& [e, w] : words) {
    if (!what.empty()) what += N == 2 ? " or " : ", ";
    what += '"' + std::string(w) + '"';
  }
  if (v.is_string()) {
    const std::string word = ToLower(v.get<std::string>());
    for (const auto& [e, w] : words) {
      if (word == w) {
        *out = e;
        return "";
      }
    }
  }
  return Expected(what, v);
}

template <typename E, size_t N>
std::string NameOf(const Words<E, N>& words, E e) {
  for (const auto& [value, w] : words) {
    if (value == e) return w;
  }
  return "?";
}

struct KeySpec {
  const char* name;
  bool required;
  Reader read;
  // The value as text, for `-t` and the reload log; the one other place a key is named.
  std::string (*show)(const Config&);
};

// clang-format off
const KeySpec kKeys[] = {
  {"fcgi_connection_type", false, [](const Json& v, Config& c) {
    std::string word;
    std::string err = ReadChoice(v, {"unix", "tcp"}, &word);
    if (err.empty()) {
      c.fcgi_connection_type = word == "tcp" ? ConnectionType::kTcp : ConnectionType::kUnix;
    }
    return err;
  }, [](const Config& c) -> std::string { return c.fcgi_connection_type == ConnectionType::kTcp ? "tcp" : "unix"; }},
  {"fcgi_connection_address", true, [](const Json& v, Config& c) {
    // Checked against the connection type once every key is read.
    std::string err = ReadString(v, "a socket path or host:port", &c.fcgi_connection_address);
    if (err.empty() && c.fcgi_connection_address.empty()) {
      err = Expected("a socket path or host:port", v);
    }
    return err;
  }, [](const Config& c) -> std::string { return c.fcgi_connection_address; }},
  {"fcgi_script_filename_validate", false, [](const Json& v, Config& c) {
    return ReadAbsolutePath(v, true, &c.fcgi_script_filename_validate);
  }, [](const Config& c) -> std::string { return c.fcgi_script_filename_validate; }},
  {"fcgi_script_filename_save", true, [](const Json& v, Config& c) {
    return ReadAbsolutePath(v, false, &c.fcgi_script_filename_save);
  }, [](const Config& c) -> std::string { return c.fcgi_script_filename_save; }},
  {"fcgi_script_filename_connect", false, [](const Json& v, Config& c) {
    return ReadAbsolutePath(v, true, &c.fcgi_script_filename_connect);
  }, [](const Config& c) -> std::string { return c.fcgi_script_filename_connect; }},
  {"fcgi_script_filename_helo", false, [](const Json& v, Config& c) {
    return ReadAbsolutePath(v, true, &c.fcgi_script_filename_helo);
  }, [](const Config& c) -> std::string { return c.fcgi_script_filename_helo; }},
  {"fcgi_script_filename_mail", false, [](const Json& v, Config& c) {
    return ReadAbsolutePath(v, true, &c.fcgi_script_filename_mail);
  }, [](const Config& c) -> std::string { return c.fcgi_script_filename_mail; }},
  {"fcgi_script_filename_eoh", false, [](const Json& v, Config& c) {
    return ReadAbsolutePath(v, true, &c.fcgi_script_filename_eoh);
  }, [](const Config& c) -> std::string { return c.fcgi_script_filename_eoh; }},
  {"milter_socket", false, [](const Json& v, Config& c) {
    return ReadMilterSocket(v, c);
  }, [](const Config& c) -> std::string { return c.milter_socket; }},
  {"milter_socket_mode", false, [](const Json& v, Config& c) {
    return ReadSocketMode(v, &c.milter_socket_mode);
  }, [](const Config& c) -> std::string { return OctalMode(c.milter_socket_mode); }},
  {"fcgi_connect_timeout", false, [](const Json& v, Config& c) {
    return ReadSeconds(v, 0.1, 29, &c.fcgi_connect_timeout);
  }, [](const Config& c) -> std::string { return FormatNumber(c.fcgi_connect_timeout); }},
  {"validate_timeout", false, [](const Json& v, Config& c) {
    return ReadSeconds(v, 0.1, 29, &c.validate_timeout);  // Postfix milter_command_timeout: 30 s
  }, [](const Config& c) -> std::string { return FormatNumber(c.validate_timeout); }},
  {"save_timeout", false, [](const Json& v, Config& c) {
    return ReadSeconds(v, 0.1, 299, &c.save_timeout);  // Postfix milter_content_timeout: 300 s
  }, [](const Config& c) -> std::string { return FormatNumber(c.save_timeout); }},
  {"connect_timeout", false, [](const Json& v, Config& c) {
    return ReadSeconds(v, 0.1, 29, &c.connect_timeout);
  }, [](const Config& c) -> std::string { return FormatNumber(c.connect_timeout); }},
  {"helo_timeout", false, [](const Json& v, Config& c) {
    return ReadSeconds(v, 0.1, 29, &c.helo_timeout);
  }, [](const Config& c) -> std::string { return FormatNumber(c.helo_timeout); }},
  {"mail_timeout", false, [](const Json& v, Config& c) {
    return ReadSeconds(v, 0.1, 29, &c.mail_timeout);
  }, [](const Config& c) -> std::string { return FormatNumber(c.mail_timeout); }},
  {"eoh_timeout", false, [](const Json& v, Config& c) {
    return ReadSeconds(v, 0.1, 29, &c.eoh_timeout);
  }, [](const Config& c) -> std::string { return FormatNumber(c.eoh_timeout); }},
  {"body_line_endings", false, [](const Json& v, Config& c) {
    std::string word;
    std::string err = ReadChoice(v, {"lf", "crlf"}, &word);
    if (err.empty()) c.body_line_endings = word == "crlf" ? LineEnding::kCrlf : LineEnding::kLf;
    return err;
  }, [](const Config& c) -> std::string { return c.body_line_endings == LineEnding::kCrlf ? "crlf" : "lf"; }},
  {"save_mode", false, [](const Json& v, Config& c) {
    std::string word;
    std::string err = ReadChoice(v, {"form", "raw"}, &word);
    if (err.empty()) c.save_mode = word == "raw" ? SaveMode::kRaw : SaveMode::kForm;
    return err;
  }, [](const Config& c) -> std::string { return c.save_mode == SaveMode::kRaw ? "raw" : "form"; }},
  {"spool_directory", false, [](const Json& v, Config& c) {
    return ReadAbsolutePath(v, false, &c.spool_directory);
  }, [](const Config& c) -> std::string { return c.spool_directory; }},
  {"spool_threshold", false, [](const Json& v, Config& c) {
    return ReadBytes(v, 0, &c.spool_threshold);
  }, [](const Config& c) -> std::string { return std::to_string(c.spool_threshold); }},
  {"max_message_size", false, [](const Json& v, Config& c) {
    return ReadBytes(v, 0, &c.max_message_size);
  }, [](const Config& c) -> std::string { return std::to_string(c.max_message_size); }},
  {"max_reply_size", false, [](const Json& v, Config& c) {
    return ReadBytes(v, 1, &c.max_reply_size);
  }, [](const Config& c) -> std::string { return std::to_string(c.max_reply_size); }},
  {"php_max_input_vars", false, [](const Json& v, Config& c) {
    // 0, or enough for the fixed save fields and one recipient (17 variables in a form).
    if (!v.is_number_unsigned() || (v.get<uint64_t>() != 0 && v.get<uint64_t>() < 17) ||
        v.get<uint64_t>() > 100000000) {
      return Expected("0 (no limit) or PHP's max_input_vars, a whole number from 17", v);
    }
    c.php_max_input_vars = v.get<uint64_t>();
    return std::string();
  }, [](const Config& c) -> std::string { return std::to_string(c.php_max_input_vars); }},
  {"fcgi_max_connections", false, [](const Json& v, Config& c) {
    if (!v.is_number_unsigned() || v.get<uint64_t>() < 1 || v.get<uint64_t>() > 1024) {
      return Expected("a whole number of connections from 1 to 1024", v);
    }
    c.fcgi_max_connections = static_cast<size_t>(v.get<uint64_t>());
    return std::string();
  }, [](const Config& c) -> std::string { return std::to_string(c.fcgi_max_connections); }},
  {"fcgi_keep_alive", false, [](const Json& v, Config& c) {
    if (!v.is_boolean()) return Expected("true or false", v);
    c.fcgi_keep_alive = v.get<bool>();
    return std::string();
  }, [](const Config& c) -> std::string { return c.fcgi_keep_alive ? "true" : "false"; }},
  {"fcgi_backends", false, [](const Json& v, Config& c) {
    return ReadBackends(v, &c.fcgi_backends);
  }, [](const Config& c) -> std::string { return BackendText(c.fcgi_backends); }},
  {"validate_failure_action", false, [](const Json& v, Config& c) {
    return ReadFailureAction(v, &c.validate_failure_action);
  }, [](const Config& c) -> std::string { return FailureActionName(c.validate_failure_action); }},
  {"save_failure_action", false, [](const Json& v, Config& c) {
    return ReadFailureAction(v, &c.save_failure_action);
  }, [](const Config& c) -> std::string { return FailureActionName(c.save_failure_action); }},
  {"connect_failure_action", false, [](const Json& v, Config& c) {
    return ReadFailureAction(v, &c.connect_failure_action);
  }, [](const Config& c) -> std::string { return FailureActionName(c.connect_failure_action); }},
  {"helo_failure_action", false, [](const Json& v, Config& c) {
    return ReadFailureAction(v, &c.helo_failure_action);
  }, [](const Config& c) -> std::string { return FailureActionName(c.helo_failure_action); }},
  {"mail_failure_action", false, [](const Json& v, Config& c) {
    return ReadFailureAction(v, &c.mail_failure_action);
  }, [](const Config& c) -> std::string { return FailureActionName(c.mail_failure_action); }},
  {"eoh_failure_action", false, [](const Json& v, Config& c) {
    return ReadFailureAction(v, &c.eoh_failure_action);
  }, [](const Config& c) -> std::string { return FailureActionName(c.eoh_failure_action); }},
  {"routes", false, [](const Json& v, Config& c) {
    return ReadRoutes(v, &c.routes);
  }, [](const Config& c) -> std::string { return RouteList(c); }},
  {"validate_cache_ttl", false, [](const Json& v, Config& c) {
    if (!v.is_number_unsigned() || v.get<uint64_t>() > 86400) {
      return Expected("a whole number of seconds from 0 (off) to 86400", v);
    }
    c.validate_cache_ttl = static_cast<int>(v.get<uint64_t>());
    return std::string();
  }, [](const Config& c) -> std::string { return std::to_string(c.validate_cache_ttl); }},
  {"validate_cache_size", false, [](const Json& v, Config& c) {
    if (!v.is_number_unsigned() || v.get<uint64_t>() > 10000000) {
      return Expected("a whole number of entries from 0 (no cache) to 10000000", v);
    }
    c.validate_cache_size = static_cast<size_t>(v.get<uint64_t>());
    return std::string();
  }, [](const Config& c) -> std::string { return std::to_string(c.validate_cache_size); }},
  {"validate_skip_authenticated", false, [](const Json& v, Config& c) {
    if (!v.is_boolean()) return Expected("true or false", v);
    c.validate_skip_authenticated = v.get<bool>();
    return std::string();
  }, [](const Config& c) -> std::string { return c.validate_skip_authenticated ? "true" : "false"; }},
  {"validate_skip_networks", false, [](const Json& v, Config& c) {
    constexpr const char* kWhat = "an array of networks such as [\"10.0.0.0/8\", \"::1/128\"]";
    if (!v.is_array()) return Expected(kWhat, v);
    std::vector<std::string> networks;
    for (const Json& item : v) {
      if (!item.is_string()) return Expected(kWhat, v) + " (bad entry " + Describe(item) + ")";
      networks.push_back(item.get<std::string>());
    }
    std::string bad;
    if (!c.validate_skip_networks.Parse(networks, &bad)) {
      return Expected(kWhat, v) + " (bad entry " + Describe(Json(bad)) + ")";
    }
    return std::string();
  }, [](const Config& c) -> std::string { return Join(c.validate_skip_networks.entries()); }},
  {"user", false, [](const Json& v, Config& c) {
    return ReadName(v, "a user name (\"\" = keep the user it was started as)", &c.user);
  }, [](const Config& c) -> std::string { return c.user; }},
  {"group", false, [](const Json& v, Config& c) {
    return ReadName(v, "a group name (\"\" = the user's primary group)", &c.group);
  }, [](const Config& c) -> std::string { return c.group; }},
  {"milter_socket_group", false, [](const Json& v, Config& c) {
    return ReadName(v, "a group name (\"\" = leave the socket's group)", &c.milter_socket_group);
  }, [](const Config& c) -> std::string { return c.milter_socket_group; }},
  {"pid_file", false, [](const Json& v, Config& c) {
    return ReadAbsolutePath(v, true, &c.pid_file);
  }, [](const Config& c) -> std::string { return c.pid_file; }},
  {"log_target", false, [](const Json& v, Config& c) {
    return ReadEnum(v, kLogTargets, &c.log_target);
  }, [](const Config& c) -> std::string { return NameOf(kLogTargets, c.log_target); }},
  {"syslog_facility", false, [](const Json& v, Config& c) {
    return ReadEnum(v, kFacilities, &c.syslog_facility);
  }, [](const Config& c) -> std::string { return NameOf(kFacilities, c.syslog_facility); }},
  {"shutdown_timeout", false, [](const Json& v, Config& c) {
    return ReadSeconds(v, 0, 600, &c.shutdown_timeout);
  }, [](const Config& c) -> std::string { return FormatNumber(c.shutdown_timeout); }},
  {"metrics_listen", false, [](const Json& v, Config& c) {
    constexpr const char* kWhat = "\"host:port\" (such as \"127.0.0.1:9466\") or \"\" for off";
    std::string err = ReadString(v, kWhat, &c.metrics_listen);
    if (!err.empty() || c.metrics_listen.empty()) return err;
    const size_t colon = c.metrics_listen.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == c.metrics_listen.size() ||
        c.metrics_listen.find_first_not_of("0123456789", colon + 1) != std::string::npos) {
      return Expected(kWhat, v);
    }
    // The port as a number: more than 5 digits, 0 or above 65535 would wrap in the uint16_t
    // the listener takes (":70000" bound port 4464).
    const std::string port = c.metrics_listen.substr(colon + 1);
    if (port.size() > 5 || std::stoul(port) < 1 || std::stoul(port) > 65535) {
      return Expected(kWhat, v) + " (port " + port + " is outside 1-65535)";
    }
    return std::string();
  }, [](const Config& c) -> std::string { return c.metrics_listen; }},
  {"log_level", false, [](const Json& v, Config& c) {
    return ReadEnum(v, kLogLevels, &c.log_level);
  }, [](const Config& c) -> std::string { return NameOf(kLogLevels, c.log_level); }},
  {"server_name", false, [](const Json& v, Config& c) {
    constexpr const char* kWhat = "a host name string (\"\" = this machine's)";
    std::string err = ReadString(v, kWhat, &c.server_name);
    if (err.empty() && HasControlChar(c.server_name)) err = Expected(kWhat, v);
    return err;
  }, [](const Config& c) -> std::string { return c.server_name; }},
};
// clang-format on

const KeySpec* FindKey(std::string_view name) {
  for (const KeySpec& k : kKeys) {
    if (name == k.name) return &k;
  }
  return nullptr;
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The known key nearest to a misspelt one, or "" when none is close enough to be a typo.
std::string ClosestKey(std::string_view unknown) {
  std::string lower = ToLower(unknown);
  std::replace(lower.begin(), lower.end(), '-', '_');
  size_t limit = lower.size() <= 4 ? 1 : lower.size() <= 8 ? 2 : 3;
  std::string best;
  size_t best_distance = limit + 1;
  for (const KeySpec& k : kKeys) {
    size_t d = EditDistance(lower, k.name);
    if (d < best_distance) {
      best_distance = d;
      best = k.name;
    }
  }
  return best;
}

std::string UnknownKeyError(const std::string& origin, const std::string& key, const Json& v) {
  std::string msg = origin + ": unknown key '" + key + "'";
  std::string suggestion = ClosestKey(key);
  if (!suggestion.empty()) return msg + " (did you mean '" + suggestion + "'?)";
  // Go-Guerrilla nested its processor keys in "backend_config"; ours live at the top level.
  if (v.is_object()) {
    for (const auto& item : v.items()) {
      if (FindKey(item.key())) return msg + " (keys go at the top level, not inside an object)";
    }
  }
  return msg;
}

// 1-based line and column (in UTF-8 characters) of the byte at `index`, which may be one past
// the end when the parser hit end of input.
void LineAndColumn(std::string_view text, size_t index, size_t* line, size_t* column) {
  index = std::min(index, text.size());
  *line = 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + index, '\n'));
  size_t line_start = index == 0 ? std::string_view::npos : text.rfind('\n', index - 1);
  line_start = line_start == std::string_view::npos ? 0 : line_start + 1;
  *column = 1;
  for (size_t i = line_start; i < index; ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) ++*column;
  }
}

// "[json.exception.parse_error.101] parse error at line 3, column 8: syntax error ..." ->
// "syntax error ...": we print our own position.
std::string StripNlohmannPrefix(const std::string& what) {
  size_t bracket = what.find("] ");
  if (bracket == std::string::npos) return what;
  std::string rest = what.substr(bracket + 2);
  size_t colon = rest.find(": ");
  if (rest.rfind("parse error", 0) == 0 && colon != std::string::npos)
    return rest.substr(colon + 2);
  return rest;
}

// The mistakes JSON newcomers make most, named instead of leaving a bare "unexpected '}'".
std::string SyntaxHint(std::string_view text, size_t index) {
  if (index >= text.size()) return "";
  char c = text[index];
  if (c == '/' || c == '#') return " (JSON has no comments; see docs/config.md)";
  if (c == '}' || c == ']') {
    size_t prev = text.find_last_not_of(" \t\r\n", index == 0 ? 0 : index - 1);
    if (index > 0 && prev != std::string_view::npos && text[prev] == ',') {
      return " (JSON allows no comma after the last item)";
    }
  }
  if (c == '\'') return " (JSON strings take double quotes)";
  return "";
}

void CheckConnectionAddress(const std::string& origin, Config& c,
                            std::vector<std::string>* errors) {
  const std::string& a = c.fcgi_connection_address;
  std::string prefix = origin + ": key 'fcgi_connection_address': ";
  if (c.fcgi_connection_type == ConnectionType::kUnix) {
    std::string why = CheckAbsolutePath(a);
    if (!why.empty()) {
      std::string hint =
          CheckHostPort(a).empty() ? "; for host:port set fcgi_connection_type to \"tcp\"" : "";
      errors->push_back(prefix + "expected an absolute socket path (fcgi_connection_type is " +
                        "\"unix\"" + hint + "), got " + Describe(Json(a)));
    } else if (a.size() > kMaxFcgiSocketPath) {
      errors->push_back(prefix + "the socket path is " + std::to_string(a.size()) +
                        " bytes long; at most " + std::to_string(kMaxFcgiSocketPath) +
                        " fit in a unix socket address");
    }
  } else {
    std::string why = CheckHostPort(a);
    if (!why.empty()) {
      std::string hint = a.front() == '/' ? "; for a socket path set fcgi_connection_type to "
                                            "\"unix\""
                                          : "";
      errors->push_back(prefix + "expected host:port or [IPv6]:port (fcgi_connection_type is " +
                        "\"tcp\"" + hint + "), got " + Describe(Json(a)) + ": " + why);
    }
  }
}

LoadResult ParseChecked(std::string_view text, const std::string& origin) {
  LoadResult result;
  std::vector<std::string>& errors = result.errors;

  std::vector<std::string> duplicates;
  std::set<std::string> seen;
  Json::parser_callback_t note_duplicates = [&](int depth, Json::parse_event_t event,
                                                Json& parsed) {
    if (event == Json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      if (!seen.insert(parsed.get<std::string>()).second) {
        duplicates.push_back(parsed.get<std::string>());
      }
    }
    return true;
  };

  Json root;
  try {
    root = Json::parse(text.begin(), text.end(), note_duplicates);
  } catch (const Json::parse_error& e) {
    // e.byte is 1-based: the position of the last character read.
    size_t index = e.byte == 0 ? 0 : e.byte - 1;
    size_t line;
    size_t column;
    LineAndColumn(text, index, &line, &column);
    errors.push_back(origin + ": line " + std::to_string(line) + ", column " +
                     std::to_string(column) + ": invalid JSON: " + StripNlohmannPrefix(e.what()) +
                     SyntaxHint(text, index));
    return result;
  } catch (const Json::exception& e) {
    // out_of_range.406 ("number overflow parsing '1e400'") carries no position.
    errors.push_back(origin + ": invalid JSON: " + StripNlohmannPrefix(e.what()));
    return result;
  }

  if (!root.is_object()) {
    errors.push_back(origin +
                     ": expected a JSON object { \"key\": value, ... } at the top level, got " +
                     Describe(root));
    return result;
  }

  Config& c = result.config;
  bool type_ok = true;
  bool address_ok = true;
  size_t address_error_slot = 0;  // keeps the address's error in file order once it is checked
  for (const auto& item : root.items()) {
    const std::string& key = item.key();
    if (key == "fcgi_connection_address") address_error_slot = errors.size();
    const KeySpec* spec = FindKey(key);
    if (spec == nullptr) {
      errors.push_back(UnknownKeyError(origin, key, item.value()));
      continue;
    }
    std::string err = spec->read(item.value(), c);
    if (!err.empty()) {
      errors.push_back(origin + ": key '" + key + "': " + err);
      if (key == "fcgi_connection_type") type_ok = false;
      if (key == "fcgi_connection_address") address_ok = false;
    }
  }
  for (const std::string& key : duplicates) {
    errors.push_back(origin + ": key '" + key + "' appears more than once");
  }
  for (const KeySpec& k : kKeys) {
    if (k.required && !root.contains(k.name) &&
        !(std::string_view(k.name) == "fcgi_connection_address" &&
          root.contains("fcgi_backends"))) {
      errors.push_back(origin + ": missing required key '" + k.name + "'");
    }
  }
  if (root.contains("fcgi_backends") && root.contains("fcgi_connection_address")) {
    errors.push_back(origin + ": keys 'fcgi_connection_address' and 'fcgi_backends': give one " +
                     "or the other (fcgi_backends lists every backend)");
  }
  if (type_ok && address_ok && !c.fcgi_connection_address.empty()) {
    std::vector<std::string> address_errors;
    CheckConnectionAddress(origin, c, &address_errors);
    errors.insert(errors.begin() + static_cast<std::ptrdiff_t>(address_error_slot),
                  address_errors.begin(), address_errors.end());
  }
  return result;
}

}  // namespace

LoadResult Parse(std::string_view json_text, const std::string& origin) {
  try {
    return ParseChecked(json_text, origin);
  } catch (const std::exception& e) {  // bad_alloc, or a nlohmann surprise: never let it escape
    LoadResult result;
    result.errors.push_back(origin + ": cannot load: " + e.what());
    return result;
  }
}

LoadResult LoadFile(const std::string& path) {
  auto fail = [&](const std::string& why) {
    LoadResult result;
    result.errors.push_back(path + ": cannot read: " + why);
    return result;
  };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(std::strerror(errno));
  std::string text;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return fail(std::strerror(err));
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxFileSize) {
      ::close(fd);
      return fail("larger than " + std::to_string(kMaxFileSize >> 20) +
                  " MiB, not a configuration file");
    }
  }
  ::close(fd);
  return Parse(text, path);
}

std::vector<std::pair<std::string, std::string>> Summarize(const Config& c) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const KeySpec& k : kKeys) out.emplace_back(k.name, k.show(c));
  return out;
}

std::vector<std::string> ChangedKeys(const Config& before, const Config& after) {
  const auto a = Summarize(before);
  const auto b = Summarize(after);
  std::vector<std::string> changed;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (a[i].second != b[i].second) {
      changed.push_back(a[i].first + ": \"" + a[i].second + "\" -> \"" + b[i].second + "\"");
    }
  }
  return changed;
}

std::vector<BackendSpec> Backends(const Config& c) {
  if (!c.fcgi_backends.empty()) return c.fcgi_backends;
  return {BackendSpec{c.fcgi_connection_type, c.fcgi_connection_address}};
}

}  // namespace config
