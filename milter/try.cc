#include "milter/try.h"

#include <getopt.h>

#include <algorithm>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "config/config.h"
#include "milter/filter.h"
#include "milter/log.h"
#include "milter/transaction.h"

namespace milter {
namespace {

constexpr int kExitAccepted = 0;
constexpr int kExitRefused = 1;
constexpr int kExitTemporary = 2;
constexpr int kExitUsage = 3;

using Action = mail::Verdict::Action;
using mail::Stage;

struct Options {
  std::string config = "/etc/fcgi-milter/fcgi-milter.json";
  std::string from;
  std::vector<std::string> esmtp_args;  // MAIL FROM's ESMTP parameters
  std::vector<std::string> rcpts;
  std::string client_ip = "127.0.0.1";
  std::string client_name = "localhost";
  std::string helo = "localhost";
  bool tls = false;
  bool json = false;
  std::string message_path = "-";
};

void PrintUsage(FILE* out) {
  std::fprintf(
      out,
      "Usage: fcgi-milter try [-c FILE] --rcpt ADDR [--rcpt ADDR...] [--from ADDR]\n"
      "                       [--esmtp-args \"SIZE=123 BODY=8BITMIME\"]\n"
      "                       [--client-ip IP] [--client-name NAME] [--helo NAME] [--tls]\n"
      "                       [--json] [MESSAGE.eml | -]\n"
      "Runs one message through the configured scripts (connect, HELO, MAIL FROM, validate,\n"
      "end of headers, save) in the daemon's order, no MTA.\n"
      "Exit status: 0 accepted, 1 refused, 2 temporary failure, 3 usage/config error.\n");
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

std::string UrlDecode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      const int hi = HexValue(in[i + 1]);
      const int lo = HexValue(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(in[i] == '+' ? ' ' : in[i]);
  }
  return out;
}

// name=value pairs of a form (possibly cut short: the last value may be partial).
std::vector<std::pair<std::string, std::string>> DecodeForm(std::string_view form) {
  std::vector<std::pair<std::string, std::string>> fields;
  size_t pos = 0;
  while (pos < form.size()) {
    size_t amp = form.find('&', pos);
    if (amp == std::string_view::npos) amp = form.size();
    std::string_view pair = form.substr(pos, amp - pos);
    const size_t eq = pair.find('=');
    fields.emplace_back(UrlDecode(pair.substr(0, eq)),
                        eq == std::string_view::npos ? "" : UrlDecode(pair.substr(eq + 1)));
    pos = amp + 1;
  }
  return fields;
}

std::string Abbreviate(const std::string& s, size_t max) {
  if (s.size() <= max) return s;
  return s.substr(0, max) + "... (" + std::to_string(s.size()) + " bytes shown of more)";
}

// The lines of `text` (LF or CRLF), without their line endings.
std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  return lines;
}

std::string Join(const std::vector<std::string>& parts, const char* separator) {
  std::string out;
  for (const std::string& p : parts) out += (out.empty() ? "" : separator) + p;
  return out;
}

// Feeds the header section of a raw message (LF or CRLF) to the transaction the way an MTA hands
// it to a milter: header name and value (leading space kept, folded lines joined by LF), then the
// end of the headers. Returns where the body starts.
size_t FeedHeaders(const std::string& raw, Transaction* t) {
  size_t pos = 0;
  std::string name;
  std::string value;
  auto flush = [&] {
    if (name.empty()) return;
    t->AddHeader(name, value, true);
    name.clear();
    value.clear();
  };
  while (pos < raw.size()) {
    size_t eol = raw.find('\n', pos);
    if (eol == std::string::npos) eol = raw.size();
    std::string line = raw.substr(pos, eol - pos);
    pos = eol + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) break;
    if ((line[0] == ' ' || line[0] == '\t') && !name.empty()) {
      value += "\n" + line;
      continue;
    }
    flush();
    const size_t colon = line.find(':');
    if (colon == std::string::npos) {
      // Not a header: the message has no header section; treat everything as body.
      pos = 0;
      break;
    }
    name = line.substr(0, colon);
    value = line.substr(colon + 1);
  }
  flush();
  t->EndHeaders();
  return std::min(pos, raw.size());
}

// Feeds the body (from `pos`) with CRLF line endings, as the MTA sends it.
void FeedBody(const std::string& raw, size_t pos, Transaction* t) {
  std::string body;
  body.reserve(raw.size() - pos + 1024);
  for (size_t i = pos; i < raw.size(); ++i) {
    if (raw[i] == '\n' && (i == 0 || raw[i - 1] != '\r')) body.push_back('\r');
    body.push_back(raw[i]);
  }
  t->AddBody(body);
}

// What the request body of an exchange holds, from its Content-Type.
enum class Payload { kNone, kForm, kRawMessage, kHeaders };

Payload PayloadOf(const Exchange& e) {
  if (e.form_preview.empty()) return Payload::kNone;
  for (const auto& [k, v] : e.params) {
    if (k != "CONTENT_TYPE") continue;
    if (v == "message/rfc822") return Payload::kRawMessage;    // save_mode raw: fields in the query
    if (v == "text/rfc822-headers") return Payload::kHeaders;  // the end-of-headers script
  }
  return Payload::kForm;
}

// --- What the MTA would do with a verdict ---

std::string SmtpLine(const mail::Verdict& v, const char* accepted_text) {
  switch (v.action) {
    case Action::kAccept: return accepted_text;
    case Action::kDiscard: return "250 (accepted, then discarded)";
    case Action::kQuarantine:
      return "250 (accepted, held in quarantine: " + v.quarantine_reason + ")";
    case Action::kReject:
    case Action::kTempfail: {
      std::string line = v.smtp_code + " " + v.enhanced_code + " " + v.text;
      for (const auto& l : v.more_lines) line += " / " + l;
      return line;
    }
  }
  return "?";
}

// The MTA's answer when a stage accepts.
const char* AcceptedLine(Stage stage) {
  switch (stage) {
    case Stage::kConnect: return "220 (the MTA's greeting)";
    case Stage::kHelo: return "250 (the MTA's HELO reply)";
    case Stage::kMailFrom: return "250 2.1.0 Ok";
    case Stage::kValidate: return "250 2.1.5 Ok";
    case Stage::kEndOfHeaders: return "(no reply yet: the MTA sends the body)";
    case Stage::kSave: return "250 2.0.0 Ok: queued";
  }
  return "";
}

// Where a refusal at a stage leaves the SMTP session.
const char* AfterRefusal(Stage stage) {
  switch (stage) {
    case Stage::kConnect: return "refused at connect: no mail on this connection";
    case Stage::kHelo: return "refused at HELO: no mail on this connection";
    case Stage::kMailFrom: return "refused at MAIL FROM: no recipient is sent";
    case Stage::kEndOfHeaders: return "refused at the end of the headers: no body, nothing saved";
    case Stage::kValidate:
    case Stage::kSave: break;
  }
  return "";
}

int ExitStatusFor(Action action) {
  switch (action) {
    case Action::kAccept:
    case Action::kDiscard:
    case Action::kQuarantine: return kExitAccepted;
    case Action::kReject: return kExitRefused;
    case Action::kTempfail: break;
  }
  return kExitTemporary;
}

// One edit of a save verdict as the MTA would apply it, with the lines that show it in full
// (a replaced body's first lines).
struct EditLine {
  std::string text;
  std::vector<std::string> detail;
};

std::string WithArgs(const mail::Verdict::Address& a) {
  return "<" + a.address + ">" + (a.args.empty() ? "" : " " + a.args);
}

std::string HeaderEditText(const mail::HeaderEdit& h) {
  const std::string which = " (occurrence " + std::to_string(h.index) + ")";
  switch (h.kind) {
    case mail::HeaderEdit::Kind::kAdd: return "add header " + h.name + ": " + h.value;
    case mail::HeaderEdit::Kind::kChange: return "change header " + h.name + which + ": " + h.value;
    case mail::HeaderEdit::Kind::kRemove: return "remove header " + h.name + which;
  }
  return "";
}

// A replaced body: its size and its first lines.
EditLine BodyEdit(const std::string& body) {
  constexpr size_t kShownLines = 5;
  const std::vector<std::string> lines = Lines(body);
  EditLine edit{"replace body (" + std::to_string(body.size()) + " bytes, " +
                    std::to_string(lines.size()) + " lines), beginning:",
                {}};
  for (size_t i = 0; i < lines.size() && i < kShownLines; ++i) {
    edit.detail.push_back("| " + Abbreviate(lines[i], 200));
  }
  if (lines.size() > kShownLines) {
    edit.detail.push_back("| ... (" + std::to_string(lines.size() - kShownLines) + " more lines)");
  }
  return edit;
}

// The edits of a save verdict in the order milter/edits.cc applies them: sender, refused and
// added recipients, header edits, inserted headers, body, quarantine.
std::vector<EditLine> Edits(const mail::Verdict& v) {
  std::vector<EditLine> edits;
  if (v.new_sender) edits.push_back({"change sender to " + WithArgs(*v.new_sender), {}});
  for (const std::string& r : v.refused_recipients) {
    edits.push_back({"refuse recipient <" + r + ">", {}});
  }
  for (const auto& a : v.added_recipients) edits.push_back({"add recipient " + WithArgs(a), {}});
  for (const auto& h : v.header_edits) edits.push_back({HeaderEditText(h), {}});
  for (const auto& h : v.inserted_headers) {
    edits.push_back({"insert header " + h.name + ": " + h.value + " (at index " +
                         std::to_string(h.index) + (h.index == 0 ? ": the top)" : ")"),
                     {}});
  }
  if (v.new_body) edits.push_back(BodyEdit(*v.new_body));
  if (v.action == Action::kQuarantine) edits.push_back({"quarantine: " + v.quarantine_reason, {}});
  return edits;
}

// Whether the MTA would apply the edits of this verdict (accept and quarantine only).
bool EditsApplied(const mail::Verdict& v) {
  return v.action == Action::kAccept || v.action == Action::kQuarantine;
}

// --- The JSON report ---

nlohmann::json RequestJson(const Exchange& e) {
  nlohmann::json j;
  nlohmann::json params = nlohmann::json::object();
  for (const auto& [k, v] : e.params) params[k] = v;
  j["params"] = params;
  const Payload payload = PayloadOf(e);
  if (payload == Payload::kHeaders) {
    j["headers_sent"] = e.form_preview;
    j["content_length"] = e.content_length;
  } else if (payload != Payload::kNone) {
    nlohmann::json fields = nlohmann::json::array();
    for (const auto& [k, v] : DecodeForm(e.form_preview)) {
      fields.push_back({{"name", k}, {"value", Abbreviate(v, k == "body" ? 200 : 1000)}});
    }
    j["form"] = fields;
    j["content_length"] = e.content_length;
  }
  return j;
}

nlohmann::json AnswerJson(const fcgi::Result& result) {
  nlohmann::json j;
  j["transport"] = result.status.ok() ? "ok" : result.status.ToString();
  // Without a usable reply (php-fpm unreachable, deadline passed, a broken record) there is no
  // HTTP status, headers or output to show: null, not the defaults of an empty response.
  const bool answered = result.status.ok();
  nlohmann::json headers = nlohmann::json::object();
  for (const auto& [k, v] : result.response.headers) headers[k] = v;
  j["status"] = answered ? nlohmann::json(result.response.status) : nlohmann::json(nullptr);
  j["headers"] = answered ? headers : nlohmann::json(nullptr);
  j["stdout"] = answered ? nlohmann::json(result.response.body) : nlohmann::json(nullptr);
  j["stderr"] = result.response.stderr_output;
  j["time_ms"] = static_cast<double>(result.elapsed.count()) / 1000.0;
  return j;
}

nlohmann::json AddressJson(const mail::Verdict::Address& a) {
  return {{"address", a.address}, {"args", a.args}};
}

// The edit fields of a save verdict, each present only when asked for.
void AddEditsJson(const mail::Verdict& v, nlohmann::json* j) {
  nlohmann::json& out = *j;
  if (!v.header_edits.empty()) {
    nlohmann::json edits = nlohmann::json::array();
    for (const auto& h : v.header_edits) {
      const char* kind = h.kind == mail::HeaderEdit::Kind::kAdd      ? "add"
                         : h.kind == mail::HeaderEdit::Kind::kChange ? "change"
                                                                     : "remove";
      edits.push_back({{"kind", kind}, {"name", h.name}, {"value", h.value}, {"index", h.index}});
    }
    out["header_edits"] = edits;
  }
  if (!v.refused_recipients.empty()) out["refused_recipients"] = v.refused_recipients;
  for (const auto& a : v.added_recipients) out["added_recipients"].push_back(AddressJson(a));
  if (v.new_sender) out["new_sender"] = AddressJson(*v.new_sender);
  for (const auto& h : v.inserted_headers) {
    out["inserted_headers"].push_back({{"name", h.name}, {"value", h.value}, {"index", h.index}});
  }
  if (v.new_body) {
    nlohmann::json first = nlohmann::json::array();
    for (const std::string& d : BodyEdit(*v.new_body).detail) first.push_back(d.substr(2));
    out["new_body"] = {{"size", v.new_body->size()}, {"first_lines", first}, {"text", *v.new_body}};
  }
  if (v.action == Action::kQuarantine) out["quarantine_reason"] = v.quarantine_reason;
}

nlohmann::json VerdictJson(const mail::Verdict& v) {
  nlohmann::json j = {{"action", mail::ActionName(v.action)},
                      {"smtp_code", v.smtp_code},
                      {"enhanced_code", v.enhanced_code},
                      {"text", v.text},
                      {"reason", v.reason}};
  AddEditsJson(v, &j);
  return j;
}

nlohmann::json ExchangeJson(const Exchange& e) {
  nlohmann::json j = RequestJson(e);
  j["skipped"] = e.skipped;
  if (!e.skipped) j.update(AnswerJson(e.result));
  j["verdict"] = VerdictJson(e.verdict);
  return j;
}

// --- The text report ---

void PrintRequest(const Exchange& e) {
  std::string method;
  std::string uri;
  for (const auto& [k, v] : e.params) {
    if (k == "REQUEST_METHOD") method = v;
    if (k == "REQUEST_URI") uri = v;
  }
  std::printf("   sent     %s %s\n", method.c_str(), uri.c_str());
  for (const auto& [k, v] : e.params) std::printf("            %s=%s\n", k.c_str(), v.c_str());
  const auto length = static_cast<unsigned long long>(e.content_length);
  switch (PayloadOf(e)) {
    case Payload::kNone: return;
    case Payload::kHeaders:
      std::printf("   headers  (the request body, %llu bytes)\n", length);
      for (const std::string& line : Lines(e.form_preview)) {
        if (!line.empty()) std::printf("            %s\n", line.c_str());  // not the blank end
      }
      return;
    case Payload::kRawMessage:
      std::printf("   query    (the request body is the message, %llu bytes)\n", length);
      break;
    case Payload::kForm: std::printf("   form     (%llu bytes)\n", length); break;
  }
  for (const auto& [k, v] : DecodeForm(e.form_preview)) {
    std::string shown = Abbreviate(v, k == "body" ? 200 : 1000);
    std::replace(shown.begin(), shown.end(), '\n', ' ');
    std::replace(shown.begin(), shown.end(), '\r', ' ');
    std::printf("            %s=%s\n", k.c_str(), shown.c_str());
  }
}

void PrintAnswer(const fcgi::Result& result) {
  const double ms = static_cast<double>(result.elapsed.count()) / 1000.0;
  if (!result.status.ok()) {
    std::printf("   answer   none: %s (after %.1f ms)\n", result.status.ToString().c_str(), ms);
    return;
  }
  std::printf("   answer   Status %d in %.1f ms\n", result.response.status, ms);
  for (const auto& [k, v] : result.response.headers) {
    std::printf("            %s: %s\n", k.c_str(), v.c_str());
  }
  std::printf("   stdout   %s\n", Abbreviate(result.response.body, 2000).c_str());
  std::printf("   stderr   %s\n", result.response.stderr_output.empty()
                                      ? "(none)"
                                      : result.response.stderr_output.c_str());
}

void PrintEdits(const mail::Verdict& v) {
  const std::vector<EditLine> edits = Edits(v);
  if (edits.empty()) return;
  if (!EditsApplied(v)) {
    std::printf("   edits    (asked for, but not applied with %s)\n", mail::ActionName(v.action));
  }
  bool first = EditsApplied(v);
  for (const EditLine& e : edits) {
    std::printf("%s%s\n", first ? "   edits    " : "            ", e.text.c_str());
    for (const std::string& d : e.detail) std::printf("              %s\n", d.c_str());
    first = false;
  }
}

// One exchange: the route it took (if routes are configured), the request, the answer, the
// verdict, the edits it asks for and what the MTA would say.
void PrintExchange(const std::string& title, const std::string& route, const Exchange& e,
                   const std::string& smtp) {
  std::printf("== %s\n", title.c_str());
  if (!route.empty()) std::printf("   route    %s\n", route.c_str());
  if (e.skipped) {
    std::printf("   not sent: %s\n", e.verdict.reason.c_str());
  } else {
    PrintRequest(e);
    PrintAnswer(e.result);
    std::printf("   verdict  %s%s%s (%s)\n", mail::ActionName(e.verdict.action),
                e.verdict.smtp_code.empty() ? "" : " ", e.verdict.smtp_code.c_str(),
                e.verdict.reason.c_str());
  }
  PrintEdits(e.verdict);
  std::printf("   smtp     %s\n", smtp.c_str());
}

bool ParseOptions(int argc, char** argv, Options* o, std::string* error) {
  static const option kOptions[] = {
      {"config", required_argument, nullptr, 'c'},
      {"from", required_argument, nullptr, 'f'},
      {"esmtp-args", required_argument, nullptr, 'E'},
      {"rcpt", required_argument, nullptr, 'r'},
      {"client-ip", required_argument, nullptr, 'i'},
      {"client-name", required_argument, nullptr, 'n'},
      {"helo", required_argument, nullptr, 'H'},
      {"tls", no_argument, nullptr, 'T'},
      {"json", no_argument, nullptr, 'j'},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, "c:f:r:h", kOptions, nullptr)) != -1) {
    switch (c) {
      case 'c': o->config = optarg; break;
      case 'f': o->from = optarg; break;
      case 'E': {
        std::istringstream words(optarg);
        for (std::string w; words >> w;) o->esmtp_args.push_back(w);
        break;
      }
      case 'r': o->rcpts.push_back(optarg); break;
      case 'i': o->client_ip = optarg; break;
      case 'n': o->client_name = optarg; break;
      case 'H': o->helo = optarg; break;
      case 'T': o->tls = true; break;
      case 'j': o->json = true; break;
      case 'h': PrintUsage(stdout); std::exit(0);
      default: *error = "unknown option"; return false;
    }
  }
  if (optind < argc) o->message_path = argv[optind++];
  if (optind < argc) {
    *error = std::string("unexpected argument '") + argv[optind] + "'";
    return false;
  }
  if (o->rcpts.empty()) {
    *error = "give at least one --rcpt";
    return false;
  }
  return true;
}

// The config's filter, or an error on stderr and false.
bool LoadFilter(const Options& o, std::shared_ptr<const Filter>* filter) {
  config::LoadResult loaded = config::LoadFile(o.config);
  if (!loaded.ok()) {
    for (const auto& e : loaded.errors) std::fprintf(stderr, "fcgi-milter try: %s\n", e.c_str());
    return false;
  }
  // Log lines (script stderr, failures) go to stderr so stdout stays the report.
  logging::Init(o.json ? config::LogLevel::kError : config::LogLevel::kWarning);
  std::unique_ptr<Filter> created;
  if (base::Status s = Filter::Create(loaded.config, &created); !s.ok()) {
    std::fprintf(stderr, "fcgi-milter try: %s\n", s.ToString().c_str());
    return false;
  }
  *filter = std::move(created);
  return true;
}

bool ReadMessage(const std::string& path, std::string* raw) {
  if (path == "-") {
    raw->assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    return true;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "fcgi-milter try: cannot read %s\n", path.c_str());
    return false;
  }
  raw->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return true;
}

// What the MTA would answer in the end, and the exit status that says so.
struct Outcome {
  int exit_code = kExitAccepted;
  std::string text;
};

// One SMTP session as the daemon sees it, from connect to end of message, each stage shown as it
// runs. Stops where the MTA would: at a refused connect, HELO, MAIL FROM or end of headers, or
// when no recipient is accepted.
class Session {
 public:
  Session(const Options& o, std::shared_ptr<const Filter> filter)
      : o_(o), filter_(std::move(filter)), given_(Given(o)) {
    report_["envelope"] = EnvelopeJson(given_);
  }

  Outcome Run(const std::string& raw) {
    // The client's facts as the daemon has them at connect, then at HELO (no queue id yet).
    mail::Envelope connection;
    connection.client_ip = given_.client_ip;
    connection.client_name = given_.client_name;
    connection.daemon_name = given_.daemon_name;
    if (auto refused = AskConnectionStage(Stage::kConnect, connection)) return *refused;
    connection.helo = given_.helo;
    connection.tls_on = given_.tls_on;
    connection.tls_version = given_.tls_version;
    connection.tls_cipher = given_.tls_cipher;
    if (auto refused = AskConnectionStage(Stage::kHelo, connection)) return *refused;
    // The same transaction the daemon runs for a message, fed from the file instead of an MTA.
    Transaction t(filter_, given_);
    if (auto refused = AskConnectionStage(Stage::kMailFrom, t.envelope())) return *refused;
    if (auto refused = AddRecipients(&t)) return *refused;
    const size_t body = FeedHeaders(raw, &t);
    if (auto refused = AskEndOfHeaders(&t)) return *refused;
    FeedBody(raw, body, &t);
    return Save(&t);
  }

  nlohmann::json& report() { return report_; }

 private:
  // The message's envelope at MAIL FROM, from the options, with a made-up queue id.
  static mail::Envelope Given(const Options& o) {
    mail::Envelope env;
    env.client_ip = o.client_ip;
    env.client_name = o.client_name;
    env.daemon_name = "try";
    env.helo = o.helo;
    env.tls_on = o.tls;
    if (o.tls) {
      env.tls_version = "TLSv1.3";
      env.tls_cipher = "TLS_AES_256_GCM_SHA384";
    }
    env.mail_from = o.from;
    env.mail_args = o.esmtp_args;
    std::random_device rd;
    char qid[16];
    std::snprintf(qid, sizeof qid, "TRY%08X", rd());
    env.queue_id = qid;
    return env;
  }

  static nlohmann::json EnvelopeJson(const mail::Envelope& env) {
    return {{"mail_from", env.mail_from}, {"mail_args", env.mail_args},
            {"client_ip", env.client_ip}, {"client_name", env.client_name},
            {"helo", env.helo},           {"tls_on", env.tls_on},
            {"queue_id", env.queue_id}};
  }

  // The connect, HELO or MAIL FROM script; its refusal ends the session.
  std::optional<Outcome> AskConnectionStage(Stage stage, const mail::Envelope& env) {
    Exchange ex;
    const mail::Verdict v = filter_->AskStage(stage, env, "", &ex);
    Show(stage, mail::StageName(stage), ex, "");
    return Refusal(stage, v);
  }

  std::optional<Outcome> Refusal(Stage stage, const mail::Verdict& v) const {
    if (v.action == Action::kAccept) return std::nullopt;
    return Outcome{ExitStatusFor(v.action),
                   SmtpLine(v, AcceptedLine(stage)) + " (" + AfterRefusal(stage) + ")"};
  }

  // Every --rcpt through validate; the session ends when none is accepted.
  std::optional<Outcome> AddRecipients(Transaction* t) {
    bool any_temporary = false;
    for (const std::string& rcpt : o_.rcpts) {
      Exchange ex;
      t->AddRecipient(rcpt, &ex);
      Show(Stage::kValidate, "validate <" + rcpt + ">", ex, rcpt);
      any_temporary = any_temporary || ex.verdict.action == Action::kTempfail;
    }
    if (!t->envelope().recipients.empty()) return std::nullopt;
    if (any_temporary) {
      return Outcome{kExitTemporary,
                     "no recipient accepted (temporary failure): the sender retries"};
    }
    return Outcome{kExitRefused, "every recipient refused: no message is sent"};
  }

  // The end-of-headers script, after the headers; its refusal ends the message before its body.
  std::optional<Outcome> AskEndOfHeaders(Transaction* t) {
    const bool asked = !t->failure() && filter_->HasStageScript(Stage::kEndOfHeaders);
    Exchange ex;
    const mail::Verdict v = t->AskEndOfHeaders(&ex);
    Show(Stage::kEndOfHeaders, "eoh", ex, "");
    if (!asked || v.action == Action::kAccept) return std::nullopt;  // a failure shows at save
    t->Fail(v);
    return Refusal(Stage::kEndOfHeaders, v);
  }

  Outcome Save(Transaction* t) {
    Exchange ex;
    std::vector<std::string> unknown;
    const mail::Verdict v = t->Finish(nullptr, &ex, &unknown);
    for (const std::string& r : unknown) {
      std::fprintf(stderr, "fcgi-milter try: the save script refused <%s>, not a recipient\n",
                   r.c_str());
    }
    const std::string& first = t->envelope().recipients.front();
    Show(Stage::kSave, "save", ex, first);
    Outcome outcome{ExitStatusFor(v.action), SmtpLine(v, AcceptedLine(Stage::kSave))};
    if (outcome.exit_code == kExitAccepted && !v.refused_recipients.empty()) {
      const bool redirected = v.refused_recipients.size() >= t->envelope().recipients.size();
      outcome.text += redirected ? " (for the added recipients only: every recipient was refused)"
                                 : " (except for the refused recipients)";
    }
    return outcome;
  }

  // "routes[0] (example.org, *.example.org)": the route a recipient takes, when routes are set.
  std::string Route(const std::string& rcpt, nlohmann::json* j) const {
    if (filter_->config().routes.empty() || rcpt.empty()) return "";
    const int r = filter_->RouteOf(rcpt);
    if (r < 0) {
      (*j)["route"] = nullptr;
      return "none: the top-level scripts";
    }
    const std::vector<std::string>& domains = filter_->config().routes[r].domains;
    (*j)["route"] = r;
    (*j)["route_domains"] = domains;
    return "routes[" + std::to_string(r) + "] (" + Join(domains, ", ") + ")";
  }

  // Records one stage's exchange in the report and, in the text report, prints it. `rcpt` picks
  // the route shown (validate: the recipient; save: the message's first recipient).
  void Show(Stage stage, const std::string& title, const Exchange& ex, const std::string& rcpt) {
    const std::string smtp = SmtpLine(ex.verdict, AcceptedLine(stage));
    nlohmann::json j = ExchangeJson(ex);
    j["smtp"] = smtp;
    const std::string route = Route(rcpt, &j);
    const bool no_script =
        stage != Stage::kValidate && stage != Stage::kSave && !filter_->HasStageScript(stage);
    report_["stages"].push_back(mail::StageName(stage));
    if (stage == Stage::kValidate) {
      j["recipient"] = rcpt;
      report_["validate"].push_back(j);
    } else {
      report_[mail::StageName(stage)] = j;
    }
    if (o_.json) return;
    if (no_script) {
      std::printf("== %s (no script)\n", title.c_str());
    } else {
      PrintExchange(title, route, ex, smtp);
    }
  }

  const Options& o_;
  std::shared_ptr<const Filter> filter_;
  const mail::Envelope given_;
  nlohmann::json report_ = nlohmann::json::object();
};

}  // namespace

int RunTry(int argc, char** argv) {
  Options o;
  std::string error;
  if (!ParseOptions(argc, argv, &o, &error)) {
    std::fprintf(stderr, "fcgi-milter try: %s\n", error.c_str());
    PrintUsage(stderr);
    return kExitUsage;
  }
  std::shared_ptr<const Filter> filter;
  std::string raw;
  if (!LoadFilter(o, &filter) || !ReadMessage(o.message_path, &raw)) return kExitUsage;
  Session session(o, filter);
  const Outcome outcome = session.Run(raw);
  nlohmann::json& report = session.report();
  report["outcome"] = outcome.text;
  report["exit_status"] = outcome.exit_code;
  if (o.json) {
    std::printf("%s\n",
                report.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("== the MTA would answer: %s\n", outcome.text.c_str());
  }
  return outcome.exit_code;
}

}  // namespace milter
