// The daemon's configuration: the JSON schema, its defaults, and loading that reports every
// problem at once (key named, expected and found value shown), so an admin fixes a file in one go.
// docs/config.md's key table documents each key (the man page is made from it); a unit test fails
// when a key here is missing there.
// Thread-safety: plain values and pure functions; a loaded Config may be read from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/network.h"

namespace config {

enum class ConnectionType { kUnix, kTcp };
enum class LineEnding { kLf, kCrlf };
enum class SaveMode { kForm, kRaw };
// What a backend failure means at a stage: "tempfail" (safe default), "accept" or "reject".
enum class FailureAction { kTempfail, kAccept, kReject };
enum class LogLevel { kError, kWarning, kInfo, kDebug };
enum class LogTarget { kStderr, kSyslog };
// syslog(3) facilities the daemon may log under (LOG_MAIL, LOG_DAEMON, LOG_USER, LOG_LOCAL0..7).
enum class SyslogFacility {
  kMail,
  kDaemon,
  kUser,
  kLocal0,
  kLocal1,
  kLocal2,
  kLocal3,
  kLocal4,
  kLocal5,
  kLocal6,
  kLocal7
};

struct BackendSpec {
  ConnectionType type = ConnectionType::kUnix;
  std::string address;
};

// One entry of "routes": recipients in these domains go to their own scripts and backends.
struct Route {
  // Lower-case; "example.org" matches that domain only, "*.example.org" its subdomains only.
  std::vector<std::string> domains;
  std::string fcgi_script_filename_validate;  // "" = the top-level key's script
  std::string fcgi_script_filename_save;      // "" = the top-level key's script
  std::vector<BackendSpec> fcgi_backends;     // empty = the top-level backends
};

struct Config {
  // The original Go processor's four keys, verbatim.
  ConnectionType fcgi_connection_type = ConnectionType::kUnix;
  // Required. kUnix: an absolute socket path. kTcp: "host:port" or "[v6addr]:port".
  std::string fcgi_connection_address;
  // Optional SCRIPT_FILENAME of the validate script; empty = recipients are not validated.
  std::string fcgi_script_filename_validate;
  // Required SCRIPT_FILENAME of the save script, an absolute path.
  std::string fcgi_script_filename_save;
  // Optional stage scripts (off when empty): asked at connect, HELO, MAIL FROM and end of
  // headers, answering like the validate script. A stage without a script costs no round trip.
  std::string fcgi_script_filename_connect;
  std::string fcgi_script_filename_helo;
  std::string fcgi_script_filename_mail;
  std::string fcgi_script_filename_eoh;
  // libmilter listen spec: "unix:/path", "local:/path", "inet:PORT@HOST", "inet6:PORT@HOST".
  // The prefix is stored lower-case whatever case the file used.
  std::string milter_socket = "unix:/run/fcgi-milter/fcgi-milter.sock";
  // From milter_socket, parsed at load: the unix socket's path ("" for inet), or the TCP port and
  // host (0 and "" for unix:/local:; the host without IPv6 brackets).
  std::string milter_socket_path = "/run/fcgi-milter/fcgi-milter.sock";
  int milter_socket_port = 0;
  std::string milter_socket_host;

  // Ours.
  int milter_socket_mode = 0660;      // permission bits of a unix milter socket ("0660" in JSON)
  double fcgi_connect_timeout = 5.0;  // seconds to establish one FastCGI connection
  double validate_timeout = 20.0;     // seconds for a whole validate request; < Postfix's 30 s
  double save_timeout = 240.0;        // seconds for a whole save request; < Postfix's 300 s
  double connect_timeout = 20.0;      // seconds for a whole connect-script request
  double helo_timeout = 20.0;         // seconds for a whole HELO-script request
  double mail_timeout = 20.0;         // seconds for a whole MAIL FROM-script request
  double eoh_timeout = 20.0;          // seconds for a whole end-of-headers-script request
  LineEnding body_line_endings = LineEnding::kLf;  // line endings of the `body` form field
  // "form": the original processor's urlencoded form. "raw": the message is the request body
  // (message/rfc822), streamed unencoded; the other fields are the query string ($_GET).
  SaveMode save_mode = SaveMode::kForm;
  std::string spool_directory = "/var/tmp";  // absolute; where large messages spill
  uint64_t spool_threshold = 1048576;        // bytes of a message kept in memory before spilling
  uint64_t max_message_size = 0;      // bytes of raw message, 0 = unlimited; over -> 552 5.3.4
  uint64_t max_reply_size = 1048576;  // bytes of script output accepted
  // The save pool's PHP max_input_vars: a save form never has more variables (PHP would drop
  // the rest silently), so recipients beyond what fits get 452 4.5.3 and come in another
  // transaction. 0 = no limit (a script that reads php://input itself).
  uint64_t php_max_input_vars = 1000;
  // Connections to the FastCGI server, busy + idle; keep below php-fpm's pm.max_children,
  // since a kept connection pins a worker. More concurrent requests wait (up to their deadline).
  size_t fcgi_max_connections = 4;
  bool fcgi_keep_alive = true;  // FCGI_KEEP_CONN: reuse connections between requests
  // A php-fpm farm: "unix:/path" or "tcp:host:port" entries, instead of the two keys above.
  // Requests go to the healthy backend with the fewest in flight.
  std::vector<BackendSpec> fcgi_backends;
  // Per-stage policy: what a backend failure (unreachable, timeout, bad status, unparsable
  // reply) means: "tempfail" (safe default), "accept" or "reject".
  FailureAction validate_failure_action = FailureAction::kTempfail;
  FailureAction save_failure_action = FailureAction::kTempfail;
  FailureAction connect_failure_action = FailureAction::kTempfail;
  FailureAction helo_failure_action = FailureAction::kTempfail;
  FailureAction mail_failure_action = FailureAction::kTempfail;
  FailureAction eoh_failure_action = FailureAction::kTempfail;
  // Per recipient domain: other validate/save scripts and backends. The first accepted
  // recipient's route is the message's; recipients of another route get 452 4.5.3 and come in
  // another transaction, so each message is saved once, by one script.
  std::vector<Route> routes;
  // Validate verdicts (accept/reject, never tempfail) reused per recipient and sender domain:
  // for this many seconds by default (0: only when a JSON reply sets cache_ttl), at most this
  // many entries (least recently used first out). A reload empties the cache.
  int validate_cache_ttl = 0;
  size_t validate_cache_size = 10000;
  bool validate_skip_authenticated = false;  // SASL-authenticated senders: no validate
  NetworkList validate_skip_networks;        // clients in these networks: no validate

  // Daemon behaviour.
  std::string user;                 // drop to this user after binding; "" = stay
  std::string group;                // and this group; "" = the user's primary group
  std::string milter_socket_group;  // chgrp the unix milter socket (e.g. "postfix"); "" = leave
  std::string pid_file;             // absolute path written at start, removed at exit; "" = none
  LogTarget log_target = LogTarget::kStderr;
  SyslogFacility syslog_facility = SyslogFacility::kMail;
  double shutdown_timeout = 30.0;  // seconds in-flight saves get to finish at stop
  std::string metrics_listen;      // "127.0.0.1:9466" serves /metrics and /healthz; "" = off
  LogLevel log_level = LogLevel::kInfo;
  std::string server_name = "";  // SERVER_NAME param; "" = gethostname() at run time
};

struct LoadResult {
  // Defaults overlaid with every value that passed its check; meaningful only when ok().
  Config config;
  // One line each, "<origin>: key 'save_timeout': expected ..., got ...". Empty when ok().
  std::vector<std::string> errors;
  bool ok() const { return errors.empty(); }
};

// Reads, parses and validates the file at `path`; errors name `path`.
LoadResult LoadFile(const std::string& path);
// Parses and validates JSON text; `origin` (normally the file name) prefixes every error.
LoadResult Parse(std::string_view json_text, const std::string& origin);

// Every key with its value as text, in schema order (for logs and `-t`).
std::vector<std::pair<std::string, std::string>> Summarize(const Config& config);
// "key: \"old\" -> \"new\"" for each key whose value differs (for reload logs).
std::vector<std::string> ChangedKeys(const Config& before, const Config& after);

// The backends to use: fcgi_backends, or the one fcgi_connection_type/_address names.
std::vector<BackendSpec> Backends(const Config& config);

}  // namespace config
