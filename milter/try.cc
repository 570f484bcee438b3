#include "milter/try.h"

#include <getopt.h>

#include <algorithm>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
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

struct Options {
  std::string config = "/etc/fcgi-milter/fcgi-milter.json";
  std::string from;
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
      "                       [--client-ip IP] [--client-name NAME] [--helo NAME] [--tls]\n"
      "                       [--json] [MESSAGE.eml | -]\n"
      "Runs one message through the configured validate and save scripts, no MTA.\n"
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

// Feeds a raw message (LF or CRLF) to the transaction the way an MTA hands it to a milter:
// header name and value (leading space kept, folded lines joined by LF), then the body with
// CRLF line endings.
void FeedMessage(const std::string& raw, Transaction* t) {
  size_t pos = 0;
  std::string name;
  std::string value;
  auto flush = [&] {
    if (name.empty()) return;
    t->AddHeader(name, value, true);
    name.clear();
    value.clear();
  };
  bool in_headers = true;
  while (in_headers && pos < raw.size()) {
    size_t eol = raw.find('\n', pos);
    if (eol == std::string::npos) eol = raw.size();
    std::string line = raw.substr(pos, eol - pos);
    pos = eol + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) {
      in_headers = false;
      break;
    }
    if ((line[0] == ' ' || line[0] == '\t') && !name.empty()) {
      value += "\n" + line;
      continue;
    }
    flush();
    const size_t colon = line.find(':');
    if (colon == std::string::npos) {
      // Not a header: the message has no header section; treat everything as body.
      pos = 0;
      in_headers = false;
      break;
    }
    name = line.substr(0, colon);
    value = line.substr(colon + 1);
  }
  flush();
  t->EndHeaders();
  std::string body;
  body.reserve(raw.size() - std::min(pos, raw.size()) + 1024);
  for (size_t i = std::min(pos, raw.size()); i < raw.size(); ++i) {
    if (raw[i] == '\n' && (i == 0 || raw[i - 1] != '\r')) body.push_back('\r');
    body.push_back(raw[i]);
  }
  t->AddBody(body);
}

nlohmann::json ExchangeJson(const Exchange& e) {
  nlohmann::json j;
  j["skipped"] = e.skipped;
  nlohmann::json params = nlohmann::json::object();
  for (const auto& [k, v] : e.params) params[k] = v;
  j["params"] = params;
  if (!e.form_preview.empty()) {
    nlohmann::json fields = nlohmann::json::array();
    for (const auto& [k, v] : DecodeForm(e.form_preview)) {
      fields.push_back({{"name", k}, {"value", Abbreviate(v, k == "body" ? 200 : 1000)}});
    }
    j["form"] = fields;
    j["content_length"] = e.content_length;
  }
  if (!e.skipped) {
    j["transport"] = e.result.status.ok() ? "ok" : e.result.status.ToString();
    // Without a usable reply (php-fpm unreachable, deadline passed, a broken record) there is no
    // HTTP status, headers or output to show: null, not the defaults of an empty response.
    const bool answered = e.result.status.ok();
    nlohmann::json headers = nlohmann::json::object();
    for (const auto& [k, v] : e.result.response.headers) headers[k] = v;
    j["status"] = answered ? nlohmann::json(e.result.response.status) : nlohmann::json(nullptr);
    j["headers"] = answered ? headers : nlohmann::json(nullptr);
    j["stdout"] = answered ? nlohmann::json(e.result.response.body) : nlohmann::json(nullptr);
    j["stderr"] = e.result.response.stderr_output;
    j["time_ms"] = static_cast<double>(e.result.elapsed.count()) / 1000.0;
  }
  j["verdict"] = {{"action", mail::ActionName(e.verdict.action)},
                  {"smtp_code", e.verdict.smtp_code},
                  {"enhanced_code", e.verdict.enhanced_code},
                  {"text", e.verdict.text},
                  {"reason", e.verdict.reason}};
  if (!e.verdict.header_edits.empty()) {
    nlohmann::json edits = nlohmann::json::array();
    for (const auto& h : e.verdict.header_edits) {
      const char* kind = h.kind == mail::HeaderEdit::Kind::kAdd      ? "add"
                         : h.kind == mail::HeaderEdit::Kind::kChange ? "change"
                                                                     : "remove";
      edits.push_back({{"kind", kind}, {"name", h.name}, {"value", h.value}, {"index", h.index}});
    }
    j["verdict"]["header_edits"] = edits;
  }
  if (!e.verdict.refused_recipients.empty()) {
    j["verdict"]["refused_recipients"] = e.verdict.refused_recipients;
  }
  return j;
}

std::string SmtpLine(const mail::Verdict& v, const char* accepted_text) {
  using Action = mail::Verdict::Action;
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

void PrintExchange(const std::string& title, const Exchange& e) {
  std::printf("== %s\n", title.c_str());
  if (e.skipped) {
    std::printf("   not sent: %s\n", e.verdict.reason.c_str());
    return;
  }
  std::string method;
  std::string uri;
  for (const auto& [k, v] : e.params) {
    if (k == "REQUEST_METHOD") method = v;
    if (k == "REQUEST_URI") uri = v;
  }
  std::printf("   sent     %s %s\n", method.c_str(), uri.c_str());
  for (const auto& [k, v] : e.params) std::printf("            %s=%s\n", k.c_str(), v.c_str());
  bool raw_body = false;  // save_mode raw: the fields are the query, the body is the message
  for (const auto& [k, v] : e.params) {
    raw_body = raw_body || (k == "CONTENT_TYPE" && v == "message/rfc822");
  }
  if (!e.form_preview.empty() && raw_body) {
    std::printf("   query    (the request body is the message, %llu bytes)\n",
                static_cast<unsigned long long>(e.content_length));
  } else if (!e.form_preview.empty()) {
    std::printf("   form     (%llu bytes)\n", static_cast<unsigned long long>(e.content_length));
  }
  if (!e.form_preview.empty()) {
    for (const auto& [k, v] : DecodeForm(e.form_preview)) {
      std::string shown = Abbreviate(v, k == "body" ? 200 : 1000);
      for (char& c : shown) {
        if (c == '\n') c = ' ';
        if (c == '\r') c = ' ';
      }
      std::printf("            %s=%s\n", k.c_str(), shown.c_str());
    }
  }
  if (!e.result.status.ok()) {
    std::printf("   answer   none: %s (after %.1f ms)\n", e.result.status.ToString().c_str(),
                static_cast<double>(e.result.elapsed.count()) / 1000.0);
  } else {
    std::printf("   answer   Status %d in %.1f ms\n", e.result.response.status,
                static_cast<double>(e.result.elapsed.count()) / 1000.0);
    for (const auto& [k, v] : e.result.response.headers) {
      std::printf("            %s: %s\n", k.c_str(), v.c_str());
    }
    std::printf("   stdout   %s\n", Abbreviate(e.result.response.body, 2000).c_str());
    std::printf("   stderr   %s\n", e.result.response.stderr_output.empty()
                                        ? "(none)"
                                        : e.result.response.stderr_output.c_str());
  }
  std::printf("   verdict  %s%s%s (%s)\n", mail::ActionName(e.verdict.action),
              e.verdict.smtp_code.empty() ? "" : " ", e.verdict.smtp_code.c_str(),
              e.verdict.reason.c_str());
  for (const auto& h : e.verdict.header_edits) {
    const char* kind = h.kind == mail::HeaderEdit::Kind::kAdd      ? "add header"
                       : h.kind == mail::HeaderEdit::Kind::kChange ? "change header"
                                                                   : "remove header";
    std::printf("            %s %s: %s\n", kind, h.name.c_str(), h.value.c_str());
  }
  for (const auto& r : e.verdict.refused_recipients) {
    std::printf("            refuse recipient <%s>\n", r.c_str());
  }
}

bool ParseOptions(int argc, char** argv, Options* o, std::string* error) {
  static const option kOptions[] = {
      {"config", required_argument, nullptr, 'c'},
      {"from", required_argument, nullptr, 'f'},
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

}  // namespace

int RunTry(int argc, char** argv) {
  Options o;
  std::string error;
  if (!ParseOptions(argc, argv, &o, &error)) {
    std::fprintf(stderr, "fcgi-milter try: %s\n", error.c_str());
    PrintUsage(stderr);
    return kExitUsage;
  }
  config::LoadResult loaded = config::LoadFile(o.config);
  if (!loaded.ok()) {
    for (const auto& e : loaded.errors) std::fprintf(stderr, "fcgi-milter try: %s\n", e.c_str());
    return kExitUsage;
  }
  // Log lines (script stderr, failures) go to stderr so stdout stays the report.
  logging::Init(o.json ? config::LogLevel::kError : config::LogLevel::kWarning);
  std::unique_ptr<Filter> created;
  if (base::Status s = Filter::Create(loaded.config, &created); !s.ok()) {
    std::fprintf(stderr, "fcgi-milter try: %s\n", s.ToString().c_str());
    return kExitUsage;
  }
  const std::shared_ptr<const Filter> filter(std::move(created));

  std::string raw;
  if (o.message_path == "-") {
    raw.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    std::ifstream in(o.message_path, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "fcgi-milter try: cannot read %s\n", o.message_path.c_str());
      return kExitUsage;
    }
    raw.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

  mail::Envelope env;
  env.client_ip = o.client_ip;
  env.client_name = o.client_name;
  env.helo = o.helo;
  env.tls_on = o.tls;
  if (o.tls) {
    env.tls_version = "TLSv1.3";
    env.tls_cipher = "TLS_AES_256_GCM_SHA384";
  }
  env.mail_from = o.from;
  env.daemon_name = "try";
  std::random_device rd;
  char qid[16];
  std::snprintf(qid, sizeof qid, "TRY%08X", rd());
  env.queue_id = qid;

  nlohmann::json report;
  report["envelope"] = {{"mail_from", env.mail_from},
                        {"client_ip", env.client_ip},
                        {"helo", env.helo},
                        {"tls_on", env.tls_on},
                        {"queue_id", env.queue_id}};
  // The same transaction the daemon runs for a message, fed from the file instead of an MTA.
  Transaction t(filter, env);
  nlohmann::json validations = nlohmann::json::array();
  bool any_temporary = false;
  for (const std::string& rcpt : o.rcpts) {
    Exchange ex;
    t.AddRecipient(rcpt, &ex);
    if (!o.json) PrintExchange("validate <" + rcpt + ">", ex);
    nlohmann::json vj = ExchangeJson(ex);
    vj["recipient"] = rcpt;
    vj["smtp"] = SmtpLine(ex.verdict, "250 2.1.5 Ok");
    validations.push_back(vj);
    if (ex.verdict.action == mail::Verdict::Action::kTempfail) {
      any_temporary = true;
    }
  }
  report["validate"] = validations;

  int exit_code;
  std::string outcome;
  if (t.envelope().recipients.empty()) {
    exit_code = any_temporary ? kExitTemporary : kExitRefused;
    outcome = any_temporary ? "no recipient accepted (temporary failure): the sender retries"
                            : "every recipient refused: no message is sent";
  } else {
    FeedMessage(raw, &t);
    Exchange ex;
    std::vector<std::string> unknown;
    t.Finish(nullptr, &ex, &unknown);
    for (const std::string& r : unknown) {
      std::fprintf(stderr, "fcgi-milter try: the save script refused <%s>, not a recipient\n",
                   r.c_str());
    }
    if (!o.json) PrintExchange("save", ex);
    report["save"] = ExchangeJson(ex);
    using Action = mail::Verdict::Action;
    switch (ex.verdict.action) {
      case Action::kAccept:
      case Action::kDiscard:
      case Action::kQuarantine: exit_code = kExitAccepted; break;
      case Action::kReject: exit_code = kExitRefused; break;
      default: exit_code = kExitTemporary; break;
    }
    outcome = SmtpLine(ex.verdict, "250 2.0.0 Ok: queued");
    if (exit_code == kExitAccepted && !ex.verdict.refused_recipients.empty()) {
      outcome += " (except for the refused recipients)";
    }
  }
  report["outcome"] = outcome;
  report["exit_status"] = exit_code;
  if (o.json) {
    std::printf("%s\n",
                report.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("== the MTA would answer: %s\n", outcome.c_str());
  }
  return exit_code;
}

}  // namespace milter
