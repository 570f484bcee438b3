#include "milter/mail/envelope.h"

#include <algorithm>

#include "milter/mail/form.h"

namespace mail {

std::string StripAngleBrackets(std::string_view address) {
  while (!address.empty() && (address.front() == ' ' || address.front() == '\t')) {
    address.remove_prefix(1);
  }
  while (!address.empty() && (address.back() == ' ' || address.back() == '\t')) {
    address.remove_suffix(1);
  }
  if (address.size() >= 2 && address.front() == '<' && address.back() == '>') {
    address = address.substr(1, address.size() - 2);
  }
  return std::string(address);
}

std::string BuildValidateQuery(const Envelope& envelope, std::string_view recipient) {
  FormBuilder form;
  form.Add("rcpt_to", recipient);
  form.Add("mail_from", envelope.mail_from);
  form.Add("remote_ip", envelope.client_ip);
  form.Add("helo", envelope.helo);
  form.Add("client_name", envelope.client_name);
  form.Add("auth_login", envelope.auth_login);
  form.Add("tls_on", envelope.tls_on ? "true" : "false");
  form.Add("daemon_name", envelope.daemon_name);
  if (!envelope.queue_id.empty()) form.Add("queue_id", envelope.queue_id);
  return form.Take();
}

std::string BuildStageQuery(const Envelope& envelope, std::string_view stage, bool with_helo,
                            bool with_sender) {
  FormBuilder form;
  form.Add("stage", stage);
  form.Add("remote_ip", envelope.client_ip);
  form.Add("client_name", envelope.client_name);
  form.Add("daemon_name", envelope.daemon_name);
  if (with_helo) {
    form.Add("helo", envelope.helo);
    form.Add("tls_on", envelope.tls_on ? "true" : "false");
    form.Add("tls_version", envelope.tls_version);
    form.Add("tls_cipher", envelope.tls_cipher);
  }
  if (with_sender) {
    form.Add("mail_from", envelope.mail_from);
    std::string args;
    for (const std::string& a : envelope.mail_args) args += (args.empty() ? "" : " ") + a;
    form.Add("esmtp_args", args);
    form.Add("auth_login", envelope.auth_login);
    if (!envelope.queue_id.empty()) form.Add("queue_id", envelope.queue_id);
  }
  return form.Take();
}

namespace {

// Form: body, then remote_ip subject tls_on helo mail_from, then rcpt_count queue_id client_name
// auth_login tls_version tls_cipher message_size daemon_name idempotency_key.
constexpr size_t kFixedFormVariables = 15;
// Raw query: the same but body.
constexpr size_t kFixedQueryVariables = 14;
constexpr size_t kMaxSubjectInQuery = 998;  // RFC 5322's line length

size_t PerRecipient(SaveMode mode) {
  return mode == SaveMode::kForm ? 2 : 1;  // rcpt_to_N and rcpt_to[], or rcpt_to[] alone
}
size_t Fixed(SaveMode mode) {
  return mode == SaveMode::kForm ? kFixedFormVariables : kFixedQueryVariables;
}

// The envelope fields every save carries but the recipients, in the form's order.
void AddEnvelopeHead(const Envelope& envelope, std::string_view subject, FormBuilder* form) {
  form->Add("remote_ip", envelope.client_ip);
  form->Add("subject", subject);
  form->Add("tls_on", envelope.tls_on ? "true" : "false");
  form->Add("helo", envelope.helo);
  form->Add("mail_from", envelope.mail_from);
}

// with_message: message_size and idempotency_key, known only once the whole message is in.
void AddEnvelopeTail(const Envelope& envelope, FormBuilder* form, bool with_message = true) {
  form->Add("rcpt_count", std::to_string(envelope.recipients.size()));
  form->Add("queue_id", envelope.queue_id);
  form->Add("client_name", envelope.client_name);
  form->Add("auth_login", envelope.auth_login);
  form->Add("tls_version", envelope.tls_version);
  form->Add("tls_cipher", envelope.tls_cipher);
  if (with_message) form->Add("message_size", std::to_string(envelope.message_size));
  form->Add("daemon_name", envelope.daemon_name);
  if (with_message) form->Add("idempotency_key", envelope.idempotency_key);
}

// At most max bytes of s, never cutting a UTF-8 sequence.
std::string_view CutUtf8(std::string_view s, size_t max) {
  if (s.size() <= max) return s;
  size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return s.substr(0, end);
}

}  // namespace

size_t SaveVariables(SaveMode mode, size_t recipients) {
  return Fixed(mode) + PerRecipient(mode) * recipients;
}

size_t MaxRecipientsWithin(SaveMode mode, size_t max_input_vars) {
  if (max_input_vars <= Fixed(mode)) return 0;
  return (max_input_vars - Fixed(mode)) / PerRecipient(mode);
}

bool SaveHasRoomFor(SaveMode mode, uint64_t max_input_vars, const Envelope& envelope,
                    std::string_view next) {
  const size_t count = envelope.recipients.size() + 1;
  if (max_input_vars != 0 && count > MaxRecipientsWithin(mode, max_input_vars)) return false;
  if (mode == SaveMode::kRaw) {
    // Counted, not encoded: this runs for every RCPT.
    constexpr size_t kField = sizeof("&rcpt_to%5B%5D=") - 1;
    size_t bytes = PercentEncodedSize(next) + kField;
    for (const std::string& r : envelope.recipients) bytes += PercentEncodedSize(r) + kField;
    if (bytes > kRawQueryRecipientBytes) return false;
  }
  return true;
}

std::string BuildSaveQuery(const Envelope& envelope) {
  FormBuilder form;
  AddEnvelopeHead(envelope, CutUtf8(envelope.subject, kMaxSubjectInQuery), &form);
  for (const std::string& rcpt : envelope.recipients) form.Add("rcpt_to[]", rcpt);
  AddEnvelopeTail(envelope, &form);
  return form.Take();
}

std::string BuildHeadersQuery(const Envelope& envelope) {
  FormBuilder form;
  AddEnvelopeHead(envelope, CutUtf8(envelope.subject, kMaxSubjectInQuery), &form);
  for (const std::string& rcpt : envelope.recipients) form.Add("rcpt_to[]", rcpt);
  AddEnvelopeTail(envelope, &form, /*with_message=*/false);
  return form.Take();
}

std::string IdempotencyKey(const Envelope& envelope, const Sha256::Digest& message_digest) {
  std::vector<std::string> recipients = envelope.recipients;
  std::sort(recipients.begin(), recipients.end());
  recipients.erase(std::unique(recipients.begin(), recipients.end()), recipients.end());
  // Percent-encoded values: no address can forge a line of this text.
  std::string text =
      "fcgi-milter idempotency key v1\nmail_from=" + PercentEncode(envelope.mail_from) + "\n";
  for (const std::string& r : recipients) text += "rcpt_to=" + PercentEncode(r) + "\n";
  text += "message=" + Sha256::Hex(message_digest) + "\n";
  Sha256 hash;
  hash.Update(text);
  return Sha256::Hex(hash.Finish());
}

std::string BuildSaveFormFields(const Envelope& envelope) {
  FormBuilder form;
  // The original processor's fields, same names and meaning.
  AddEnvelopeHead(envelope, envelope.subject, &form);
  for (size_t i = 0; i < envelope.recipients.size(); ++i) {
    form.Add("rcpt_to_" + std::to_string(i), envelope.recipients[i]);
  }
  // The same list the PHP way: $_POST['rcpt_to'] is an array.
  for (const std::string& rcpt : envelope.recipients) form.Add("rcpt_to[]", rcpt);
  // Ours.
  AddEnvelopeTail(envelope, &form);
  return "&" + form.Take();
}

}  // namespace mail
