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

}  // namespace

ScriptReply ParseScriptReply(std::string_view body) {
  ScriptReply reply;
  body = TrimLeft(body);
  std::string_view line = FirstLine(body);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  reply.first_line = ForLog(line);

  if (body.substr(0, 4) == "PASS") {
    reply.kind = ScriptReply::Kind::kPass;
    return reply;
  }
  if (body.substr(0, 5) == "SAVED") {
    reply.kind = ScriptReply::Kind::kSaved;
    return reply;
  }
  std::string_view rest;
  if (HasKeyword(line, "REJECT", &rest)) {
    if (ParseCodedLine(rest, '5', &reply)) {
      reply.kind = ScriptReply::Kind::kReject;
    } else {
      reply = OtherKeeping(std::move(reply.first_line));
    }
    return reply;
  }
  if (HasKeyword(line, "TEMPFAIL", &rest)) {
    if (ParseCodedLine(rest, '4', &reply)) {
      reply.kind = ScriptReply::Kind::kTempfail;
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
    case ScriptReply::Kind::kOther: return "other";
  }
  return "other";
}

}  // namespace mail
