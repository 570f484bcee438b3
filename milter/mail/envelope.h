// What the scripts are told about one SMTP transaction: the envelope and connection facts, and
// the two encodings of them the script contract fixes (the validate query string and the save
// form that precedes `body`).
// Thread-safety: value types and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mail {

struct Envelope {
  std::string client_ip;    // SMTP client address (never 127.0.0.1 unless it really is)
  std::string client_name;  // reverse DNS name the MTA reports, may be "unknown" or empty
  std::string helo;
  bool tls_on = false;
  std::string tls_version;              // {tls_version}
  std::string tls_cipher;               // {cipher}
  std::string auth_login;               // {auth_authen}, SASL login, empty when not authenticated
  std::string daemon_name;              // {daemon_name}: which MTA service took the connection
  std::string mail_from;                // without angle brackets; "" for the null sender <>
  std::vector<std::string> recipients;  // accepted ones, without angle brackets
  std::string queue_id;                 // {i}
  std::string subject;                  // decoded to UTF-8
  uint64_t message_size = 0;            // bytes of the raw message as sent in `body`
};

// Removes one pair of surrounding angle brackets (and surrounding spaces) from a MAIL/RCPT
// argument: "<a@b>" -> "a@b", "<>" -> "".
std::string StripAngleBrackets(std::string_view address);

// rcpt_to, mail_from, remote_ip, helo: the QUERY_STRING of a validate request.
std::string BuildValidateQuery(const Envelope& envelope, std::string_view recipient);

// The save form begins "body=" and the encoded message, so the body is the first variable PHP
// parses: max_input_vars (1000 by default) silently drops every variable after the limit, and
// a script that finds no body must never be the one that is cut.
inline constexpr std::string_view kSaveFormBodyPrefix = "body=";

// Every save field but `body`, each preceded by '&', to follow the encoded message.
std::string BuildSaveFormFields(const Envelope& envelope);

// How many variables PHP counts in a save form for n recipients (rcpt_to_0.. and each rcpt_to[]
// element count one each), and the most recipients whose form stays within max_input_vars.
size_t SaveFormVariables(size_t recipients);
size_t MaxRecipientsWithin(size_t max_input_vars);

}  // namespace mail
