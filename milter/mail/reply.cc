// Script reply parsing; see reply.h.
#include "milter/mail/reply.h"

#include <utility>

namespace mail {
namespace {

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}
bool IsWsp(char c) {
  return c == ' ' || c == '\t';
}
bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}
bool IsControl(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7F;
}

std::string_view TrimLeft(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  return s;
}
std::string_view TrimRight(std::string_view s) {
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

std::string_view FirstLine(std::string_view s) {
  const size_t nl = s.find('\n');
  return nl == std::string_view::npos ? s : s.substr(0, nl);
}

std::string ForLog(std::string_view line) {
  line = TrimRight(line);
  if (line.size() > kMaxReplyFirstLine) line = line.substr(0, kMaxReplyFirstLine);
  std::string out(line);
  for (char& c : out) {
    if (IsControl(c)) c = '?';
  }
  return out;
}

// SMTP reply text: NUL and CR vanish (LF cannot occur, the line ends there); other control
// characters become '?' so nothing odd reaches the MTA's reply line.
std::string CleanText(std::string_view text) {
  text = TrimRight(text);
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (out.size() >= kMaxReplyText) break;
    if (c == '\0' || c == '\r' || c == '\n') continue;
    out.push_back(c != '\t' && IsControl(c) ? '?' : c);
  }
  return out;
}

// Takes the next whitespace-delimited token off the front of *s.
std::string_view NextToken(std::string_view* s) {
  size_t i = 0;
  while (i < s->size() && !IsWsp((*s)[i])) ++i;
  std::string_view tok = s->substr(0, i);
  s->remove_prefix(i);
  while (!s->empty() && IsWsp(s->front())) s->remove_prefix(1);
  return tok;
}

bool IsDigits(std::string_view s, size_t min, size_t max) {
  if (s.size() < min || s.size() > max) return false;
  for (char c : s) {
    if (!IsDigit(c)) return false;
  }
  return true;
}

// RFC 3463: class "." subject "." detail, subject and detail 1-3 digits.
bool IsEnhancedCode(std::string_view s, char cls) {
  if (s.size() < 5 || s[0] != cls || s[1] != '.') return false;
  s.remove_prefix(2);
  const size_t dot = s.find('.');
  if (dot == std::string_view::npos) return false;
  return IsDigits(s.substr(0, dot), 1, 3) && IsDigits(s.substr(dot + 1), 1, 3);
}

// "<code> [<enhanced>] [text]" after REJECT/TEMPFAIL; false when the codes are not of `cls`.
bool ParseCodedLine(std::string_view rest, char cls, ScriptReply* reply) {
  const std::string_view code = NextToken(&rest);
  if (!IsDigits(code, 3, 3) || code[0] != cls) return false;
  // A token that starts like an enhanced code ("5." / "4." / "2.") must be a valid one of the
  // same class; anything else is where the text begins.
  if (rest.size() >= 2 && IsDigit(rest[0]) && rest[1] == '.') {
    const std::string_view enhanced = NextToken(&rest);
    if (!IsEnhancedCode(enhanced, cls)) return false;
    reply->enhanced_code = std::string(enhanced);
  }
  reply->smtp_code = std::string(code);
  reply->text = CleanText(rest);
  return true;
}

// True when `line` is `keyword` alone or followed by whitespace.
bool HasKeyword(std::string_view line, std::string_view keyword, std::string_view* rest) {
  if (line.substr(0, keyword.size()) != keyword) return false;
  std::string_view after = line.substr(keyword.size());
  if (!after.empty() && !IsSpace(after.front())) return false;
  while (!after.empty() && IsWsp(after.front())) after.remove_prefix(1);
  *rest = after;
  return true;
}

// A malformed coded line: drop whatever was parsed, keep the line for the log.
ScriptReply OtherKeeping(std::string first_line) {
  ScriptReply reply;
  reply.first_line = std::move(first_line);
  return reply;
}

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    char c = s[i];
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (c != prefix[i]) return false;
  }
  return true;
}

bool IsWordChar(char c) {
  return IsDigit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

// A temporary answer whatever its form: the code and enhanced code are kept only where they are
// valid 4xx ones; the rest of the line is the text.
void ReadTemporary(std::string_view rest, ScriptReply* reply) {
  reply->kind = ScriptReply::Kind::kTempfail;
  std::string_view probe = rest;
  const std::string_view code = NextToken(&probe);
  if (IsDigits(code, 3, 3)) {
    if (code[0] == '4') {
      reply->smtp_code = std::string(code);
    } else {
      reply->note = "code " + std::string(code) + " is not temporary, 451 used";
    }
    rest = probe;
  }
  if (rest.size() >= 2 && IsDigit(rest[0]) && rest[1] == '.') {
    probe = rest;
    const std::string_view enhanced = NextToken(&probe);
    if (IsEnhancedCode(enhanced, '4')) {
      reply->enhanced_code = std::string(enhanced);
      rest = probe;
    } else if (IsEnhancedCode(enhanced, '5') || IsEnhancedCode(enhanced, '2')) {
      if (!reply->note.empty()) reply->note += "; ";
      reply->note += "enhanced code " + std::string(enhanced) + " is not temporary, dropped";
      rest = probe;
    }
  }
  reply->text = CleanText(rest);
}

constexpr std::string_view kPhpErrorTypes[] = {
    "Fatal error",   "Recoverable fatal error",
    "Warning",       "Parse error",
    "Notice",        "Strict Standards",
    "Deprecated",    "Unknown error",
    "Core Warning",  "Core Error",
    "Compile Error", "Compile Warning",
};

// PHP's error display (php_error_cb in main/main.c): "Warning: text in FILE on line N" in text
// mode, "<br />\n<b>Warning</b>:  text in <b>FILE</b> on line <b>N</b><br />" with html_errors,
// "PHP Warning:  text" from the CLI SAPI, and Xdebug's "<font size='1'><table
// class='xdebug-error …'>". The " on line " (or Xdebug's class) must follow within the first
// KiB, so a script that answers "Warning: mailbox nearly full" is not taken for PHP.
bool IsPhpErrorDisplay(std::string_view s) {
  const std::string_view head = s.substr(0, 2048);
  if (s.substr(0, 6) == "<br />") s = TrimLeft(s.substr(6));
  if ((s.substr(0, 5) == "<font" || s.substr(0, 6) == "<table") &&
      head.find("xdebug-error") != std::string_view::npos) {
    return true;
  }
  if (s.substr(0, 3) == "<b>") s.remove_prefix(3);
  if (s.substr(0, 4) == "PHP ") s.remove_prefix(4);
  for (const std::string_view type : kPhpErrorTypes) {
    if (s.substr(0, type.size()) != type) continue;
    std::string_view after = s.substr(type.size());
    if (after.substr(0, 4) == "</b>") after.remove_prefix(4);
    if (!after.empty() && after.front() == ':') {
      return head.find(" on line ") != std::string_view::npos;
    }
  }
  return false;
}

// PHP's message for the log: tags removed, whitespace runs collapsed to one space, bounded.
std::string PhpErrorText(std::string_view s) {
  s = s.substr(0, 4096);
  std::string out;
  bool in_tag = false;
  for (char c : s) {
    if (out.size() >= kMaxReplyText) break;
    if (c == '<') {
      in_tag = true;
      continue;
    }
    if (in_tag) {
      if (c == '>') in_tag = false;
      continue;
    }
    if (IsSpace(c) || IsControl(c)) {
      if (!out.empty() && out.back() != ' ') out.push_back(' ');
      continue;
    }
    out.push_back(c);
  }
  return std::string(TrimRight(out));
}

}  // namespace

ScriptReply ParseScriptReply(std::string_view body) {
  ScriptReply reply;
  body = TrimLeft(body);
  // A UTF-8 byte order mark (a script file saved "with BOM" prints it before anything else).
  if (body.substr(0, 3) == "\xEF\xBB\xBF") body = TrimLeft(body.substr(3));
  std::string_view line = FirstLine(body);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  reply.first_line = ForLog(line);

  if (IsPhpErrorDisplay(body)) {
    reply.kind = ScriptReply::Kind::kPhpError;
    reply.php_error = PhpErrorText(body);
    return reply;
  }
  if (body.substr(0, 4) == "PASS") {
    reply.kind = ScriptReply::Kind::kPass;
    return reply;
  }
  std::string_view rest;
  if (HasKeyword(line, "SAVED", &rest)) {
    reply.kind = ScriptReply::Kind::kSaved;
    return reply;
  }
  if (StartsWithNoCase(line, "TEMPFAIL")) {
    rest = line.substr(8);
    while (!rest.empty() && IsWordChar(rest.front())) rest.remove_prefix(1);  // TEMPFAILED
    while (!rest.empty() && (IsWsp(rest.front()) || rest.front() == ':' || rest.front() == ',' ||
                             rest.front() == '-' || rest.front() == ';')) {
      rest.remove_prefix(1);
    }
    ReadTemporary(rest, &reply);
    return reply;
  }
  if (line.size() >= 3 && line[0] == '4' && IsDigits(line.substr(0, 3), 3, 3) &&
      (line.size() == 3 || IsWsp(line[3]) || line[3] == '-')) {
    std::string_view after = line.substr(3);
    if (!after.empty() && after.front() == '-') after.remove_prefix(1);  // "451-…" multi-line
    while (!after.empty() && IsWsp(after.front())) after.remove_prefix(1);
    ReadTemporary(std::string(line.substr(0, 3)) + " " + std::string(after), &reply);
    return reply;
  }
  if (HasKeyword(line, "REJECT", &rest)) {
    std::string_view probe = rest;
    const std::string_view code = NextToken(&probe);
    std::string_view enhanced_probe = probe;
    const std::string_view enhanced = NextToken(&enhanced_probe);
    if ((IsDigits(code, 3, 3) && code[0] == '4') || IsEnhancedCode(enhanced, '4')) {
      // A temporary code under REJECT: the script's own words disagree; the safe reading wins.
      ReadTemporary(rest, &reply);
      reply.note = "REJECT with a temporary code read as TEMPFAIL" +
                   (reply.note.empty() ? std::string() : "; " + reply.note);
      return reply;
    }
    if (ParseCodedLine(rest, '5', &reply)) {
      reply.kind = ScriptReply::Kind::kReject;
    } else {
      reply = OtherKeeping(std::move(reply.first_line));
    }
    return reply;
  }
  if (HasKeyword(line, "DISCARD", &rest)) {
    reply.kind = ScriptReply::Kind::kDiscard;
    reply.text = CleanText(rest);
    return reply;
  }
  return reply;
}

const char* ScriptReplyKindName(ScriptReply::Kind kind) {
  switch (kind) {
    case ScriptReply::Kind::kPass: return "PASS";
    case ScriptReply::Kind::kSaved: return "SAVED";
    case ScriptReply::Kind::kReject: return "REJECT";
    case ScriptReply::Kind::kTempfail: return "TEMPFAIL";
    case ScriptReply::Kind::kDiscard: return "DISCARD";
    case ScriptReply::Kind::kPhpError: return "PHP error";
    case ScriptReply::Kind::kOther: return "other";
  }
  return "other";
}

}  // namespace mail
