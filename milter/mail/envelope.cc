#include "milter/mail/envelope.h"

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

namespace {
// body, then remote_ip subject tls_on helo mail_from, then rcpt_count queue_id client_name
// auth_login tls_version tls_cipher message_size daemon_name (BuildSaveFormFields).
constexpr size_t kFixedSaveVariables = 14;
constexpr size_t kVariablesPerRecipient = 2;  // rcpt_to_N and rcpt_to[]
}  // namespace

size_t SaveFormVariables(size_t recipients) {
  return kFixedSaveVariables + kVariablesPerRecipient * recipients;
}

size_t MaxRecipientsWithin(size_t max_input_vars) {
  if (max_input_vars <= kFixedSaveVariables) return 0;
  return (max_input_vars - kFixedSaveVariables) / kVariablesPerRecipient;
}

std::string BuildSaveFormFields(const Envelope& envelope) {
  FormBuilder form;
  // The original processor's fields, same names and meaning.
  form.Add("remote_ip", envelope.client_ip);
  form.Add("subject", envelope.subject);
  form.Add("tls_on", envelope.tls_on ? "true" : "false");
  form.Add("helo", envelope.helo);
  form.Add("mail_from", envelope.mail_from);
  for (size_t i = 0; i < envelope.recipients.size(); ++i) {
    form.Add("rcpt_to_" + std::to_string(i), envelope.recipients[i]);
  }
  // The same list the PHP way: $_POST['rcpt_to'] is an array.
  for (const std::string& rcpt : envelope.recipients) form.Add("rcpt_to[]", rcpt);
  // Ours.
  form.Add("rcpt_count", std::to_string(envelope.recipients.size()));
  form.Add("queue_id", envelope.queue_id);
  form.Add("client_name", envelope.client_name);
  form.Add("auth_login", envelope.auth_login);
  form.Add("tls_version", envelope.tls_version);
  form.Add("tls_cipher", envelope.tls_cipher);
  form.Add("message_size", std::to_string(envelope.message_size));
  form.Add("daemon_name", envelope.daemon_name);
  return "&" + form.Take();
}

}  // namespace mail
