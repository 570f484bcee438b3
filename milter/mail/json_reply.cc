#include "milter/mail/json_reply.h"

#include <strings.h>

#include <nlohmann/json.hpp>

namespace mail {
namespace {

using Json = nlohmann::json;

constexpr size_t kMaxLines = 32;       // libmilter's smfi_setmlreply limit
constexpr size_t kMaxLineBytes = 400;  // an SMTP reply line is at most 512 bytes
constexpr size_t kMaxHeaderBytes = 8192;
constexpr size_t kMaxAddressBytes = 512;  // RFC 5321's path limit is 256; room for SMTPUTF8
constexpr size_t kMaxArgsBytes = 1024;
constexpr size_t kMaxAddedRecipients = 1000;

// CR, LF and NUL would end the SMTP reply line (or a header) early: they become spaces.
std::string SafeLine(std::string_view s, size_t max) {
  std::string out;
  out.reserve(std::min(s.size(), max));
  for (char c : s) {
    if (out.size() >= max) break;
    out.push_back(c == '\r' || c == '\n' || c == '\0' ? ' ' : c);
  }
  return out;
}

bool ValidHeaderName(const std::string& name) {
  if (name.empty() || name.size() > 256) return false;
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 32 || u >= 127 || c == ':') return false;
  }
  return true;
}

// An envelope address the daemon wraps in <> for libmilter: no byte that would end or split it.
bool ValidAddress(const std::string& a) {
  if (a.empty() || a.size() > kMaxAddressBytes) return false;
  for (char c : a) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 32 || u == 127 || c == '<' || c == '>') return false;
  }
  return true;
}

// ESMTP parameters ("NOTIFY=NEVER ORCPT=rfc822;a@b"): spaces between them, no control character.
bool ValidArgs(const std::string& a) {
  if (a.size() > kMaxArgsBytes) return false;
  for (char c : a) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 32 || u == 127) return false;
  }
  return true;
}

// LF line endings become CRLF, as the milter protocol carries a body; CRLF stays as it is.
std::string ToCrlf(std::string_view body) {
  std::string out;
  out.reserve(body.size() + body.size() / 32);
  char prev = '\0';
  for (char c : body) {
    if (c == '\n' && prev != '\r') out.push_back('\r');
    out.push_back(c);
    prev = c;
  }
  return out;
}

bool ValidCode(const std::string& code, char cls) {
  return code.size() == 3 && code[0] == cls && code[1] >= '0' && code[1] <= '9' && code[2] >= '0' &&
         code[2] <= '9';
}

bool ValidEnhanced(const std::string& code, char cls) {
  // class.subject.detail: 1-3 digits each after the class digit.
  if (code.size() < 5 || code[0] != cls || code[1] != '.') return false;
  size_t digits = 0;
  int dots = 0;
  for (size_t i = 2; i < code.size(); ++i) {
    if (code[i] == '.') {
      if (digits == 0 || ++dots > 1) return false;
      digits = 0;
    } else if (code[i] >= '0' && code[i] <= '9') {
      if (++digits > 3) return false;
    } else {
      return false;
    }
  }
  return dots == 1 && digits > 0;
}

class Reader {
 public:
  explicit Reader(std::string* error) : error_(error) {}

  bool Fail(std::string message) {
    if (error_->empty()) *error_ = std::move(message);
    return false;
  }

  bool String(const Json& obj, const char* key, std::string* out, bool required) {
    auto it = obj.find(key);
    if (it == obj.end()) return !required || Fail(std::string("missing key '") + key + "'");
    if (!it->is_string()) return Fail(std::string("key '") + key + "' must be a string");
    *out = it->get<std::string>();
    return true;
  }

  bool Code(const Json& obj, std::string* out) {
    auto it = obj.find("smtp_code");
    if (it == obj.end()) return true;
    if (it->is_number_unsigned()) {
      *out = std::to_string(it->get<uint64_t>());
      return true;
    }
    if (it->is_string()) {
      *out = it->get<std::string>();
      return true;
    }
    return Fail("key 'smtp_code' must be a number such as 550 or a string such as \"550\"");
  }

  bool Text(const Json& obj, std::vector<std::string>* lines) {
    auto it = obj.find("text");
    if (it == obj.end()) return true;
    if (it->is_string()) {
      lines->push_back(SafeLine(it->get<std::string>(), kMaxLineBytes));
      return true;
    }
    if (!it->is_array() || it->empty() || it->size() > kMaxLines) {
      return Fail("key 'text' must be a string or an array of 1 to 32 strings");
    }
    for (const Json& line : *it) {
      if (!line.is_string()) return Fail("key 'text': every line must be a string");
      lines->push_back(SafeLine(line.get<std::string>(), kMaxLineBytes));
    }
    return true;
  }

  bool Headers(const Json& obj, const char* key, HeaderEdit::Kind kind,
               std::vector<HeaderEdit>* out) {
    auto it = obj.find(key);
    if (it == obj.end()) return true;
    if (!it->is_array()) return Fail(std::string("key '") + key + "' must be an array");
    for (const Json& item : *it) {
      if (!item.is_object()) {
        return Fail(std::string("key '") + key + "': every entry must be an object");
      }
      HeaderEdit edit;
      edit.kind = kind;
      for (const auto& [k, v] : item.items()) {
        const bool known = k == "name" || (k == "value" && kind != HeaderEdit::Kind::kRemove) ||
                           (k == "index" && kind != HeaderEdit::Kind::kAdd);
        if (!known) return Fail(std::string("key '") + key + "': unknown field '" + k + "'");
      }
      if (!String(item, "name", &edit.name, true)) return false;
      if (!ValidHeaderName(edit.name)) {
        return Fail(std::string("key '") + key + "': invalid header name \"" +
                    SafeLine(edit.name, 80) + "\"");
      }
      if (kind != HeaderEdit::Kind::kRemove) {
        std::string value;
        if (!String(item, "value", &value, true)) return false;
        edit.value = SafeLine(value, kMaxHeaderBytes);
      }
      if (auto idx = item.find("index"); idx != item.end()) {
        if (!idx->is_number_unsigned() || idx->get<uint64_t>() < 1 || idx->get<uint64_t>() > 1000) {
          return Fail(std::string("key '") + key + "': 'index' must be a whole number from 1");
        }
        edit.index = static_cast<int>(idx->get<uint64_t>());
      }
      out->push_back(std::move(edit));
    }
    return true;
  }

  // insert_headers: [{"name", "value", "index"}], index 0 (the default) = above every header.
  bool Inserts(const Json& obj, std::vector<Verdict::HeaderInsert>* out) {
    const char* const key = "insert_headers";
    auto it = obj.find(key);
    if (it == obj.end()) return true;
    if (!it->is_array()) return Fail("key 'insert_headers' must be an array");
    for (const Json& item : *it) {
      if (!item.is_object()) return Fail("key 'insert_headers': every entry must be an object");
      for (const auto& field : item.items()) {
        const std::string& k = field.key();
        if (k != "name" && k != "value" && k != "index") {
          return Fail(std::string("key '") + key + "': unknown field '" + k + "'");
        }
      }
      Verdict::HeaderInsert insert;
      std::string value;
      if (!String(item, "name", &insert.name, true)) return false;
      if (!ValidHeaderName(insert.name)) {
        return Fail(std::string("key '") + key + "': invalid header name \"" +
                    SafeLine(insert.name, 80) + "\"");
      }
      if (!String(item, "value", &value, true)) return false;
      insert.value = SafeLine(value, kMaxHeaderBytes);
      if (auto idx = item.find("index"); idx != item.end()) {
        if (!idx->is_number_unsigned() || idx->get<uint64_t>() > 1000) {
          return Fail(
              "key 'insert_headers': 'index' must be a whole number from 0 (the top) to 1000");
        }
        insert.index = static_cast<int>(idx->get<uint64_t>());
      }
      out->push_back(std::move(insert));
    }
    return true;
  }

  // An envelope address: "a@b", or {"address": "a@b", "args": "NOTIFY=NEVER"}.
  bool Address(const Json& value, const char* key, Verdict::Address* out) {
    if (value.is_string()) {
      out->address = value.get<std::string>();
    } else if (value.is_object()) {
      for (const auto& field : value.items()) {
        const std::string& k = field.key();
        if (k != "address" && k != "args") {
          return Fail(std::string("key '") + key + "': unknown field '" + k + "'");
        }
      }
      if (!String(value, "address", &out->address, true) ||
          !String(value, "args", &out->args, false)) {
        return false;
      }
      if (!ValidArgs(out->args)) {
        return Fail(std::string("key '") + key + "': 'args' must be ESMTP parameters such as " +
                    "\"NOTIFY=NEVER\", at most 1024 bytes, no CR, LF or other control character");
      }
    } else {
      return Fail(std::string("key '") + key +
                  "' must be an address string or an object {\"address\", \"args\"}");
    }
    if (!ValidAddress(out->address)) {
      return Fail(std::string("key '") + key + "': invalid address \"" +
                  SafeLine(out->address, 80) +
                  "\" (1 to 512 bytes; no space, control character, < or >)");
    }
    return true;
  }

 private:
  std::string* error_;
};

}  // namespace

bool IsJsonContentType(std::string_view content_type) {
  while (!content_type.empty() && content_type.front() == ' ') content_type.remove_prefix(1);
  const std::string_view kJson = "application/json";
  if (content_type.size() < kJson.size() ||
      strncasecmp(content_type.data(), kJson.data(), kJson.size()) != 0) {
    return false;
  }
  const std::string_view rest = content_type.substr(kJson.size());
  return rest.empty() || rest.front() == ';' || rest.front() == ' ';
}

namespace {

std::string Lower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

// Every key is one the schema has, and allowed at this stage.
bool CheckKeys(const Json& root, Stage stage, Reader* r) {
  static const char* const kCommon[] = {"action", "smtp_code", "enhanced_code", "text"};
  static const char* const kSaveOnly[] = {"reason",         "add_headers",       "change_headers",
                                          "remove_headers", "reject_recipients", "insert_headers",
                                          "add_recipients", "change_from",       "replace_body"};
  static const char* const kValidateOnly[] = {"cache_ttl"};
  for (const auto& item : root.items()) {
    const std::string& key = item.key();  // a structured binding cannot be captured (clang 14)
    const auto in = [&key](const auto& list) {
      for (const char* k : list) {
        if (key == k) return true;
      }
      return false;
    };
    if (in(kSaveOnly) && stage != Stage::kSave) {
      return r->Fail("key '" + key + "' is only allowed in a save reply");
    }
    if (in(kValidateOnly) && stage != Stage::kValidate) {
      return r->Fail("key '" + key + "' is only allowed in a validate reply");
    }
    if (!in(kCommon) && !in(kSaveOnly) && !in(kValidateOnly)) {
      return r->Fail("unknown key '" + key + "'");
    }
  }
  return true;
}

// "action", lower-cased into *action, as the verdict's action.
bool ReadAction(const Json& root, bool save, Reader* r, Verdict* v, std::string* action) {
  if (!r->String(root, "action", action, true)) return false;
  *action = Lower(*action);
  if (*action == "accept") {
    v->action = Verdict::Action::kAccept;
  } else if (*action == "reject") {
    v->action = Verdict::Action::kReject;
  } else if (*action == "tempfail") {
    v->action = Verdict::Action::kTempfail;
  } else if (save && *action == "discard") {
    v->action = Verdict::Action::kDiscard;
  } else if (save && *action == "quarantine") {
    v->action = Verdict::Action::kQuarantine;
  } else {
    return r->Fail(
        "key 'action': \"" + SafeLine(*action, 40) + "\" is not one of " +
        (save ? "accept, reject, tempfail, discard, quarantine" : "accept, reject, tempfail"));
  }
  return true;
}

// smtp_code, enhanced_code and text: checked against the action, defaults from the reply table.
bool ReadSmtpReply(const Json& root, Stage stage, Reader* r, Verdict* v, std::string* action) {
  std::string code;
  std::string enhanced;
  std::vector<std::string> lines;
  if (!r->Code(root, &code) || !r->String(root, "enhanced_code", &enhanced, false) ||
      !r->Text(root, &lines)) {
    return false;
  }
  // A temporary code under "reject": the script's words disagree, and the safe reading wins, as
  // for a plain REJECT 4xx line.
  if (v->action == Verdict::Action::kReject &&
      (ValidCode(code, '4') || ValidEnhanced(enhanced, '4'))) {
    v->action = Verdict::Action::kTempfail;
    *action = "tempfail";
    if (!ValidCode(code, '4')) code.clear();
    if (!ValidEnhanced(enhanced, '4')) enhanced.clear();
  }
  const bool rejecting = v->action == Verdict::Action::kReject;
  const bool tempfailing = v->action == Verdict::Action::kTempfail;
  if (!rejecting && !tempfailing) {
    if (!code.empty() || !enhanced.empty() || !lines.empty()) {
      return r->Fail(
          "keys 'smtp_code', 'enhanced_code' and 'text' only go with reject or tempfail");
    }
    return true;
  }
  const char cls = rejecting ? '5' : '4';
  const DefaultReply d = DefaultReplyFor(stage, v->action);
  if (code.empty()) code = d.code;
  if (!ValidCode(code, cls)) {
    return r->Fail("key 'smtp_code': " + SafeLine(code, 20) + " does not go with " + *action +
                   " (needs " + cls + "xx)");
  }
  if (enhanced.empty()) enhanced = d.enhanced;
  if (!ValidEnhanced(enhanced, cls)) {
    return r->Fail("key 'enhanced_code': \"" + SafeLine(enhanced, 20) + "\" is not a " + cls +
                   ".x.y code");
  }
  if (lines.empty()) lines.push_back(d.text);
  if (lines.front().empty()) lines.front() = d.text;  // "text": "" or [""]: no reply text at all
  v->smtp_code = code;
  v->enhanced_code = enhanced;
  v->text = lines.front();
  v->more_lines.assign(lines.begin() + 1, lines.end());
  return true;
}

// What a save reply may ask of the MTA: header edits, refused and added recipients, a new sender,
// a new body, the quarantine reason.
bool ReadSaveEdits(const Json& root, Reader* r, Verdict* v) {
  if (!r->Headers(root, "add_headers", HeaderEdit::Kind::kAdd, &v->header_edits) ||
      !r->Headers(root, "change_headers", HeaderEdit::Kind::kChange, &v->header_edits) ||
      !r->Headers(root, "remove_headers", HeaderEdit::Kind::kRemove, &v->header_edits)) {
    return false;
  }
  if (auto it = root.find("reject_recipients"); it != root.end()) {
    if (!it->is_array()) return r->Fail("key 'reject_recipients' must be an array of addresses");
    for (const Json& a : *it) {
      if (!a.is_string() || a.get<std::string>().empty()) {
        return r->Fail("key 'reject_recipients': every entry must be a non-empty address string");
      }
      v->refused_recipients.push_back(SafeLine(a.get<std::string>(), 512));
    }
  }
  if (!r->Inserts(root, &v->inserted_headers)) return false;
  if (auto it = root.find("add_recipients"); it != root.end()) {
    if (!it->is_array() || it->size() > kMaxAddedRecipients) {
      return r->Fail("key 'add_recipients' must be an array of at most 1000 addresses");
    }
    for (const Json& a : *it) {
      Verdict::Address added;
      if (!r->Address(a, "add_recipients", &added)) return false;
      v->added_recipients.push_back(std::move(added));
    }
  }
  if (auto it = root.find("change_from"); it != root.end()) {
    Verdict::Address sender;
    if (!r->Address(*it, "change_from", &sender)) return false;
    v->new_sender = std::move(sender);
  }
  if (auto it = root.find("replace_body"); it != root.end()) {
    if (!it->is_string() || it->get_ref<const std::string&>().empty()) {
      return r->Fail("key 'replace_body' must be a non-empty string: the new message body");
    }
    v->new_body = ToCrlf(it->get_ref<const std::string&>());
  }
  if (auto it = root.find("reason"); it != root.end()) {
    if (v->action != Verdict::Action::kQuarantine || !it->is_string()) {
      return r->Fail("key 'reason' is a string that only goes with quarantine");
    }
    v->quarantine_reason = SafeLine(it->get<std::string>(), kMaxLineBytes);
  }
  if (v->action == Verdict::Action::kQuarantine && v->quarantine_reason.empty()) {
    v->quarantine_reason = "quarantined by the save script";
  }
  return true;
}

// A validate reply's cache_ttl (seconds), when it has one.
bool ReadCacheTtl(const Json& root, Reader* r, Verdict* v) {
  auto it = root.find("cache_ttl");
  if (it == root.end()) return true;
  if (!it->is_number_unsigned() || it->get<uint64_t>() > 86400) {
    return r->Fail("key 'cache_ttl' must be a whole number of seconds from 0 to 86400");
  }
  v->cache_ttl_seconds = static_cast<int>(it->get<uint64_t>());
  return true;
}

std::optional<Verdict> ParseStrict(Stage stage, std::string_view body, std::string* error) {
  error->clear();
  const Json root = Json::parse(body.begin(), body.end(), nullptr, false);
  if (root.is_discarded()) {
    *error = "not valid JSON";
    return std::nullopt;
  }
  if (!root.is_object()) {
    *error = "the reply must be a JSON object";
    return std::nullopt;
  }
  Reader r(error);
  const bool save = stage == Stage::kSave;
  Verdict v;
  std::string action;
  if (!CheckKeys(root, stage, &r) || !ReadAction(root, save, &r, &v, &action) ||
      !ReadSmtpReply(root, stage, &r, &v, &action) || (save && !ReadSaveEdits(root, &r, &v)) ||
      (stage == Stage::kValidate && !ReadCacheTtl(root, &r, &v))) {
    return std::nullopt;
  }
  v.reason = "script replied JSON action " + action;
  return v;
}

// The action a reply names, lower-cased, or "" when it is not an object with a string action.
std::string NamedAction(std::string_view body) {
  const Json root = Json::parse(body.begin(), body.end(), nullptr, false);
  if (!root.is_object()) return "";
  auto it = root.find("action");
  return it != root.end() && it->is_string() ? Lower(it->get<std::string>()) : "";
}

}  // namespace

std::optional<Verdict> ParseJsonVerdict(Stage stage, std::string_view body, std::string* error) {
  std::optional<Verdict> v = ParseStrict(stage, body, error);
  if (v || NamedAction(body) != "tempfail") return v;
  // The script said "later" and got something else wrong (a 5xx code, an unknown key): it still
  // means later, never the failure policy, which may be accept or reject.
  Verdict later =
      TemporaryFailure("script replied JSON action tempfail (defaults used: " + *error + ")");
  error->clear();
  return later;
}

}  // namespace mail
