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

#include "milter/mail/digest.h"

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
  std::vector<std::string> mail_args;   // MAIL FROM's ESMTP arguments: "SIZE=1234", "BODY=8BITMIME"
  std::vector<std::string> recipients;  // accepted ones, without angle brackets
  std::string queue_id;                 // {i}
  std::string subject;                  // decoded to UTF-8
  uint64_t message_size = 0;            // bytes of the raw message as sent in `body`
  std::string idempotency_key;          // IdempotencyKey(), set at end of message
};

// How a save request carries the message. kForm: the original processor's urlencoded form, the
// message in its `body` field. kRaw: the message itself is the request body
// (Content-Type: message/rfc822) and the other fields are the query string ($_GET).
enum class SaveMode { kForm, kRaw };

// Removes one pair of surrounding angle brackets (and surrounding spaces) from a MAIL/RCPT
// argument: "<a@b>" -> "a@b", "<>" -> "".
std::string StripAngleBrackets(std::string_view address);

// rcpt_to, mail_from, remote_ip, helo: the QUERY_STRING of a validate request.
std::string BuildValidateQuery(const Envelope& envelope, std::string_view recipient);

// The QUERY_STRING of a connect, HELO or MAIL FROM script's GET: `stage` and what is known at
// that stage (remote_ip, client_name, daemon_name; from HELO on helo and the TLS facts; from MAIL
// FROM on mail_from, esmtp_args (space-separated) and auth_login).
std::string BuildStageQuery(const Envelope& envelope, std::string_view stage, bool with_helo,
                            bool with_sender);

// The save form begins "body=" and the encoded message, so the body is the first variable PHP
// parses: max_input_vars (1000 by default) silently drops every variable after the limit, and
// a script that finds no body must never be the one that is cut.
inline constexpr std::string_view kSaveFormBodyPrefix = "body=";

// Every save field but `body`, each preceded by '&', to follow the encoded message.
std::string BuildSaveFormFields(const Envelope& envelope);

// The QUERY_STRING of a raw-mode save: the same fields as the form but body, with the
// recipients only as rcpt_to[] ($_GET['rcpt_to'] is an array) and the subject cut to 998 bytes
// (on a UTF-8 character boundary), so the query stays within one FastCGI params record.
std::string BuildSaveQuery(const Envelope& envelope);

// The QUERY_STRING of an end-of-headers script: BuildSaveQuery's fields but message_size and
// idempotency_key, which only the whole message gives.
std::string BuildHeadersQuery(const Envelope& envelope);

// How many variables PHP counts in a save request for n recipients (every rcpt_to_N and each
// rcpt_to[] element count one), and the most recipients that stay within max_input_vars.
size_t SaveVariables(SaveMode mode, size_t recipients);
size_t MaxRecipientsWithin(SaveMode mode, size_t max_input_vars);

// Bytes of a raw-mode query the recipients may take: QUERY_STRING and REQUEST_URI both carry
// it, and every FastCGI param must fit one 65535-byte record.
inline constexpr size_t kRawQueryRecipientBytes = 24 * 1024;

// Whether the save request can carry `next` besides the recipients already in the envelope:
// within max_input_vars PHP variables (0: no limit) and, in raw mode, kRawQueryRecipientBytes.
bool SaveHasRoomFor(SaveMode mode, uint64_t max_input_vars, const Envelope& envelope,
                    std::string_view next);

// The idempotency key of a save: lower-case hex SHA-256 over a versioned text naming the
// envelope sender, the distinct accepted recipients in byte order, and the SHA-256 of the
// message exactly as the save carries it. A sender's retry of the same message to the same
// recipients (or the same message reaching another MX with the same body_line_endings) gives
// the same key; a different message, sender or recipient set gives another.
std::string IdempotencyKey(const Envelope& envelope, const Sha256::Digest& message_digest);

}  // namespace mail
