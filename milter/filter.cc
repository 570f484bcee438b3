#include "milter/filter.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include "milter/edits.h"
#include "milter/libmilter_internals.h"
#include "milter/log.h"
#include "milter/mail/raw_message.h"
#include "milter/mail/rfc2047.h"
#include "milter/mail/route.h"
#include "milter/metrics.h"
#include "milter/transaction.h"
#include "version.h"

namespace milter {
namespace {

using Clock = std::chrono::steady_clock;

std::mutex g_current_mutex;
std::shared_ptr<const Filter> g_current;
std::atomic<int> g_in_flight{0};
std::atomic<bool> g_stopping{false};

// Counts one thing in progress for as long as it lives, whichever way its scope is left.
class InProgress {
 public:
  explicit InProgress(std::atomic<int>* counter) : counter_(counter) { counter_->fetch_add(1); }
  ~InProgress() { counter_->fetch_sub(1); }
  InProgress(const InProgress&) = delete;
  InProgress& operator=(const InProgress&) = delete;

 private:
  std::atomic<int>* counter_;
};

// Per-connection state, owned through smfi_setpriv.
struct Session {
  mail::Envelope connection;           // client and HELO/TLS facts, copied into each message
  std::optional<Transaction> message;  // from MAIL FROM to end of message or abort
  bool leading_space = false;  // SMFIP_HDR_LEADSPC granted: header values keep their whitespace
  unsigned long no_reply = 0;  // SMFIP_NR_* stages the MTA does not wait on
  int tcp_fd = -1;             // the MTA connection when it is TCP and we could find it
  // A failure at a no-reply connection stage (connect, HELO): every message gets it at its end.
  std::optional<mail::Verdict> connection_failure;
};

// The MTA writes unanswered packets back to back; with Nagle on its side each later packet
// waits for the ACK of the previous one, which a delayed ACK holds ~40 ms. Quick-ACK mode is
// not sticky in Linux, so it is re-armed at each callback (each follows a read).
void QuickAck(const Session* s) {
  if (s->tcp_fd < 0) return;
  int one = 1;
  ::setsockopt(s->tcp_fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

// CONTINUE, or NOREPLY where the MTA was told not to wait for this stage's answer.
sfsistat Continue(const Session* s, unsigned long nr_bit) {
  QuickAck(s);
  return (s->no_reply & nr_bit) != 0 ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

Session* GetSession(SMFICTX* ctx) {
  return static_cast<Session*>(smfi_getpriv(ctx));
}

Session* EnsureSession(SMFICTX* ctx) {
  Session* s = GetSession(ctx);
  if (s == nullptr) {
    s = new Session;
    smfi_setpriv(ctx, s);
  }
  return s;
}

std::string Macro(SMFICTX* ctx, const char* name) {
  const char* v = smfi_getsymval(ctx, const_cast<char*>(name));
  return v != nullptr ? std::string(v) : std::string();
}

void RefreshQueueId(SMFICTX* ctx, Transaction* t) {
  std::string id = Macro(ctx, "i");
  if (!id.empty()) t->set_queue_id(std::move(id));
}

std::string DoublePercent(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\r' || c == '\n' || c == '\0') continue;
    out.push_back(c);
    if (c == '%') out.push_back('%');
  }
  return out;
}

// Sets the SMTP reply text; several lines go through smfi_setmlreply (at most 32).
void SetReply(SMFICTX* ctx, const mail::Verdict& v) {
  char* code = const_cast<char*>(v.smtp_code.c_str());
  char* xcode = v.enhanced_code.empty() ? nullptr : const_cast<char*>(v.enhanced_code.c_str());
  int rc;
  if (v.more_lines.empty()) {
    std::string text = DoublePercent(v.text);
    rc = smfi_setreply(ctx, code, xcode, text.empty() ? nullptr : text.data());
  } else {
    std::vector<std::string> lines;
    lines.push_back(DoublePercent(v.text));
    for (const std::string& l : v.more_lines) lines.push_back(DoublePercent(l));
    char* p[32] = {nullptr};
    for (size_t i = 0; i < lines.size() && i < 32; ++i) p[i] = lines[i].data();
    // libmilter takes the lines as varargs and stops at the first null.
    rc = smfi_setmlreply(ctx, code, xcode, p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8],
                         p[9], p[10], p[11], p[12], p[13], p[14], p[15], p[16], p[17], p[18], p[19],
                         p[20], p[21], p[22], p[23], p[24], p[25], p[26], p[27], p[28], p[29],
                         p[30], p[31], nullptr);
  }
  if (rc != MI_SUCCESS) {
    LOG_WARNING("the MTA library refused reply %s %s", v.smtp_code.c_str(),
                v.enhanced_code.c_str());
  }
}

// Turns a verdict into libmilter's answer; the reply code is set only when its class matches
// the action (libmilter silently drops a mismatched one).
sfsistat Answer(SMFICTX* ctx, const mail::Verdict& v, sfsistat accept) {
  using Action = mail::Verdict::Action;
  switch (v.action) {
    case Action::kAccept: return accept;
    case Action::kQuarantine: return accept;  // held by the MTA; see ApplyEndOfMessage
    case Action::kDiscard: return SMFIS_DISCARD;
    case Action::kReject:
    case Action::kTempfail: {
      const char want = v.action == Action::kReject ? '5' : '4';
      if (v.smtp_code.size() == 3 && v.smtp_code[0] == want) SetReply(ctx, v);
      return v.action == Action::kReject ? SMFIS_REJECT : SMFIS_TEMPFAIL;
    }
  }
  return SMFIS_TEMPFAIL;
}

mail::Verdict LocalTempfail(std::string reason) {
  return mail::TemporaryFailure(std::move(reason));
}

// A failure at the stage of `nr_bit`: answered now where the MTA waits for this stage, else kept
// and answered at end of message. libmilter drops any answer but NOREPLY at a stage negotiated as
// no-reply, and its state machine falls out of step: the end of message would then go
// unanswered until the MTA's content timeout and its milter_default_action (maybe "accept").
sfsistat Fail(SMFICTX* ctx, unsigned long nr_bit, mail::Verdict v) {
  Session* s = GetSession(ctx);
  if (s == nullptr || nr_bit == 0 || (s->no_reply & nr_bit) == 0) {
    return Answer(ctx, v, SMFIS_CONTINUE);
  }
  if (s->message) {
    s->message->Fail(std::move(v));
  } else if ((nr_bit & (SMFIP_NR_CONN | SMFIP_NR_HELO)) != 0 && !s->connection_failure) {
    s->connection_failure = std::move(v);  // every message of this connection
  }
  // Without a message (a failure at MAIL FROM) every RCPT is tempfailed: that stage always waits.
  return SMFIS_NOREPLY;
}

// FCGI_MILTER_FAULT_INJECT=<stage> (connect, helo, mail, rcpt, header, eoh, body, eom) makes that
// callback throw: the tests use it to show what the MTA sees when a callback fails.
bool FaultInjectedAt(const char* stage) {
  static const char* const injected = std::getenv("FCGI_MILTER_FAULT_INJECT");
  return injected != nullptr && std::strcmp(injected, stage) == 0;
}

// Every callback body runs inside this: nothing may throw into libmilter's C code. nr_bit is the
// stage's SMFIP_NR_* flag (0 where the MTA always waits for the answer).
template <typename F>
sfsistat Guarded(SMFICTX* ctx, const char* stage, unsigned long nr_bit, F&& body) {
  std::string what;
  try {
    if (FaultInjectedAt(stage)) throw std::runtime_error("fault injected for a test");
    return body();
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
    what = "unknown exception";
  }
  try {
    LOG_ERROR("%s: internal error: %s; tempfailing", stage, what.c_str());
    return Fail(ctx, nr_bit,
                LocalTempfail(std::string("internal error at ") + stage + ": " + what));
  } catch (...) {
    return nr_bit != 0 ? SMFIS_NOREPLY : SMFIS_TEMPFAIL;
  }
}

sfsistat OnNegotiate(SMFICTX* ctx, unsigned long f0, unsigned long f1, unsigned long, unsigned long,
                     unsigned long* pf0, unsigned long* pf1, unsigned long* pf2,
                     unsigned long* pf3) {
  return Guarded(ctx, "negotiate", 0, [&] {
    Session* s = EnsureSession(ctx);
    *pf0 = f0 & (EditActions() | SMFIF_SETSYMLIST);
    // Header values with their leading whitespace: the saved message must be the one sent.
    // No unknown-command or no-op stages. The DATA stage stays: without it Postfix's next
    // packet waits on Nagle/delayed ACK over inet: sockets (docs/platform-notes.md).
    *pf1 = f1 & (SMFIP_HDR_LEADSPC | SMFIP_NOUNKNOWN);
    // Stages whose answer is always "continue" need no reply: fewer round trips per message.
    // Only where no stall can follow: on a unix socket, or on TCP with quick ACKs armed.
    const std::shared_ptr<const Filter> filter = Filter::Current();
    const libmilter::Connection conn =
        libmilter::FindConnection(ctx, filter->config().milter_socket_port);
    const bool is_unix = conn.transport == libmilter::Transport::kUnix;
    s->tcp_fd = conn.tcp_fd;
    // A stage with a script keeps its answer; the others cost no round trip.
    unsigned long asked = 0;
    if (filter->HasStageScript(mail::Stage::kConnect)) asked |= SMFIP_NR_CONN;
    if (filter->HasStageScript(mail::Stage::kHelo)) asked |= SMFIP_NR_HELO;
    if (filter->HasStageScript(mail::Stage::kMailFrom)) asked |= SMFIP_NR_MAIL;
    if (filter->HasStageScript(mail::Stage::kEndOfHeaders)) asked |= SMFIP_NR_EOH;
    if (is_unix || s->tcp_fd >= 0) {
      s->no_reply = f1 & ~asked &
                    (SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_DATA | SMFIP_NR_HDR |
                     SMFIP_NR_EOH | SMFIP_NR_BODY);
      *pf1 |= s->no_reply;
      // DATA and end-of-headers carry nothing we use (the encoder ends the header section
      // itself), so on a unix socket the MTA need not send them. Not on TCP: the macro packet
      // that precedes DATA would then reach us with no callback to re-arm quick ACKs after it,
      // and the next packet would stall again (measured: 45 ms per message).
      if (is_unix) *pf1 |= f1 & (SMFIP_NODATA | ((asked & SMFIP_NR_EOH) != 0 ? 0 : SMFIP_NOEOH));
    }
    QuickAck(s);
    LOG_DEBUG("negotiated with the MTA: protocol flags 0x%lx (no-reply 0x%lx), %s", *pf1,
              s->no_reply,
              is_unix          ? "unix socket"
              : s->tcp_fd >= 0 ? "TCP, quick ACKs"
                               : "TCP");
    *pf2 = 0;
    *pf3 = 0;
    s->leading_space = (*pf1 & SMFIP_HDR_LEADSPC) != 0;
    if ((*pf0 & SMFIF_SETSYMLIST) != 0) {
      // The macros the scripts are told about, asked for at the stage they are known.
      smfi_setsymlist(ctx, SMFIM_CONNECT, const_cast<char*>("j {daemon_name} {client_addr}"));
      smfi_setsymlist(ctx, SMFIM_HELO, const_cast<char*>("{tls_version} {cipher}"));
      smfi_setsymlist(ctx, SMFIM_ENVFROM, const_cast<char*>("i {auth_type} {auth_authen}"));
      smfi_setsymlist(ctx, SMFIM_ENVRCPT, const_cast<char*>("i"));
      smfi_setsymlist(ctx, SMFIM_EOM, const_cast<char*>("i"));
    }
    return SMFIS_CONTINUE;
  });
}

// After a stage script: go on where it accepted, else its refusal (logged), answered now or, at a
// stage the MTA does not wait on, at end of message.
sfsistat AfterStageScript(SMFICTX* ctx, Session* s, mail::Stage stage, unsigned long nr_bit,
                          const mail::Verdict& v, const mail::Envelope& e) {
  metrics::CountStage(mail::StageName(stage), mail::ActionName(v.action));
  if (v.action == mail::Verdict::Action::kAccept) return Continue(s, nr_bit);
  LOG_INFO("%s: %s script: client %s helo=<%s> from=<%s>: %s %s %s (%s)",
           e.queue_id.empty() ? "NOQUEUE" : e.queue_id.c_str(), mail::StageName(stage),
           e.client_ip.c_str(), e.helo.c_str(), e.mail_from.c_str(), mail::ActionName(v.action),
           v.smtp_code.c_str(), v.enhanced_code.c_str(), v.reason.c_str());
  return Fail(ctx, nr_bit, v);
}

sfsistat OnConnect(SMFICTX* ctx, char* hostname, _SOCK_ADDR* hostaddr) {
  return Guarded(ctx, "connect", SMFIP_NR_CONN, [&] {
    Session* s = EnsureSession(ctx);
    s->connection = mail::Envelope();
    s->connection.client_name = hostname != nullptr ? hostname : "";
    char buf[INET6_ADDRSTRLEN] = {0};
    if (hostaddr != nullptr && hostaddr->sa_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(hostaddr)->sin_addr, buf, sizeof buf);
    } else if (hostaddr != nullptr && hostaddr->sa_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(hostaddr)->sin6_addr, buf, sizeof buf);
    }
    s->connection.client_ip = buf;
    if (s->connection.client_ip.empty()) s->connection.client_ip = Macro(ctx, "{client_addr}");
    s->connection.daemon_name = Macro(ctx, "{daemon_name}");
    const std::shared_ptr<const Filter> filter = Filter::Current();
    if (!filter->HasStageScript(mail::Stage::kConnect)) return Continue(s, SMFIP_NR_CONN);
    QuickAck(s);
    const mail::Verdict v = filter->AskStage(mail::Stage::kConnect, s->connection);
    return AfterStageScript(ctx, s, mail::Stage::kConnect, SMFIP_NR_CONN, v, s->connection);
  });
}

sfsistat OnHelo(SMFICTX* ctx, char* helo) {
  return Guarded(ctx, "helo", SMFIP_NR_HELO, [&] {
    Session* s = EnsureSession(ctx);
    s->connection.helo = helo != nullptr ? helo : "";
    s->connection.tls_version = Macro(ctx, "{tls_version}");
    s->connection.tls_cipher = Macro(ctx, "{cipher}");
    s->connection.tls_on = !s->connection.tls_version.empty();
    const std::shared_ptr<const Filter> filter = Filter::Current();
    if (!filter->HasStageScript(mail::Stage::kHelo)) return Continue(s, SMFIP_NR_HELO);
    QuickAck(s);
    const mail::Verdict v = filter->AskStage(mail::Stage::kHelo, s->connection);
    return AfterStageScript(ctx, s, mail::Stage::kHelo, SMFIP_NR_HELO, v, s->connection);
  });
}

sfsistat OnEnvFrom(SMFICTX* ctx, char** argv) {
  return Guarded(ctx, "mail", SMFIP_NR_MAIL, [&] {
    Session* s = EnsureSession(ctx);
    s->message.reset();
    mail::Envelope envelope = s->connection;
    envelope.mail_from = mail::StripAngleBrackets(argv != nullptr && argv[0] ? argv[0] : "");
    for (char** arg = argv != nullptr && argv[0] != nullptr ? argv + 1 : nullptr;
         arg != nullptr && *arg != nullptr; ++arg) {
      envelope.mail_args.emplace_back(*arg);
    }
    envelope.auth_login = Macro(ctx, "{auth_authen}");
    Transaction& t = s->message.emplace(Filter::Current(), std::move(envelope));
    if (s->connection_failure) t.Fail(*s->connection_failure);
    RefreshQueueId(ctx, &t);
    if (t.failure() || !t.filter().HasStageScript(mail::Stage::kMailFrom)) {
      return Continue(s, SMFIP_NR_MAIL);
    }
    QuickAck(s);
    const mail::Verdict v = t.filter().AskStage(mail::Stage::kMailFrom, t.envelope());
    const sfsistat answer =
        AfterStageScript(ctx, s, mail::Stage::kMailFrom, SMFIP_NR_MAIL, v, t.envelope());
    // Refused now: the MTA starts over with another MAIL FROM, this transaction is over.
    if (v.action != mail::Verdict::Action::kAccept && answer != SMFIS_NOREPLY) s->message.reset();
    return answer;
  });
}

sfsistat OnEnvRcpt(SMFICTX* ctx, char** argv) {
  return Guarded(ctx, "rcpt", 0, [&] {
    Session* s = GetSession(ctx);
    if (s == nullptr || !s->message) return SMFIS_TEMPFAIL;
    Transaction& t = *s->message;
    RefreshQueueId(ctx, &t);
    QuickAck(s);
    const std::string rcpt = mail::StripAngleBrackets(argv != nullptr && argv[0] ? argv[0] : "");
    // While the daemon drains for a stop, a connection the MTA kept open may start another
    // transaction: refuse its recipients for now, so that nothing new starts to wait for.
    const mail::Verdict v = g_stopping.load() ? mail::ShuttingDown() : t.AddRecipient(rcpt);
    metrics::CountRecipient(mail::ActionName(v.action));
    if (v.action != mail::Verdict::Action::kAccept) {
      const mail::Envelope& e = t.envelope();
      LOG_INFO("%s: rcpt <%s> from %s: %s %s %s (%s)",
               e.queue_id.empty() ? "NOQUEUE" : e.queue_id.c_str(), rcpt.c_str(),
               e.client_ip.c_str(), mail::ActionName(v.action), v.smtp_code.c_str(),
               v.enhanced_code.c_str(), v.reason.c_str());
    }
    return Answer(ctx, v, SMFIS_CONTINUE);
  });
}

sfsistat OnData(SMFICTX* ctx) {
  Session* s = GetSession(ctx);
  return s != nullptr ? Continue(s, SMFIP_NR_DATA) : SMFIS_CONTINUE;
}

// After a piece of the message: a failure (size limit, spool) ends the transaction at once where
// the MTA waits for this stage's answer, else (no-reply stages) at end of message.
sfsistat AfterMessageData(SMFICTX* ctx, Session* s, unsigned long nr_bit) {
  const std::optional<mail::Verdict>& failure = s->message->failure();
  if (failure && (s->no_reply & nr_bit) == 0) return Answer(ctx, *failure, SMFIS_CONTINUE);
  return Continue(s, nr_bit);
}

// A message packet with no transaction open (a failure at MAIL FROM, or an MTA out of step).
sfsistat NoTransaction(SMFICTX* ctx, unsigned long nr_bit) {
  return Fail(ctx, nr_bit, LocalTempfail("message data without an open transaction"));
}

sfsistat OnHeader(SMFICTX* ctx, char* name, char* value) {
  return Guarded(ctx, "header", SMFIP_NR_HDR, [&] {
    Session* s = GetSession(ctx);
    if (s == nullptr || !s->message) return NoTransaction(ctx, SMFIP_NR_HDR);
    s->message->AddHeader(name != nullptr ? name : "", value != nullptr ? value : "",
                          s->leading_space);
    return AfterMessageData(ctx, s, SMFIP_NR_HDR);
  });
}

sfsistat OnEndOfHeaders(SMFICTX* ctx) {
  return Guarded(ctx, "eoh", SMFIP_NR_EOH, [&] {
    Session* s = GetSession(ctx);
    if (s == nullptr || !s->message) return NoTransaction(ctx, SMFIP_NR_EOH);
    Transaction& t = *s->message;
    t.EndHeaders();
    if (!t.failure() && t.filter().HasStageScript(mail::Stage::kEndOfHeaders)) {
      RefreshQueueId(ctx, &t);
      QuickAck(s);
      const mail::Verdict v = t.AskEndOfHeaders();
      metrics::CountStage(mail::StageName(mail::Stage::kEndOfHeaders), mail::ActionName(v.action));
      // Refused before the body is sent: kept as the transaction's failure, answered now (or at
      // end of message where the MTA does not wait for this stage).
      if (v.action != mail::Verdict::Action::kAccept) t.Fail(v);
    }
    return AfterMessageData(ctx, s, SMFIP_NR_EOH);
  });
}

sfsistat OnBody(SMFICTX* ctx, unsigned char* chunk, size_t len) {
  return Guarded(ctx, "body", SMFIP_NR_BODY, [&] {
    Session* s = GetSession(ctx);
    if (s == nullptr || !s->message) return NoTransaction(ctx, SMFIP_NR_BODY);
    s->message->AddBody(std::string_view(reinterpret_cast<const char*>(chunk), len));
    return AfterMessageData(ctx, s, SMFIP_NR_BODY);
  });
}

sfsistat OnEndOfMessage(SMFICTX* ctx) {
  return Guarded(ctx, "eom", 0, [&] {
    Session* s = GetSession(ctx);
    if (s == nullptr || !s->message) return SMFIS_TEMPFAIL;
    Transaction& t = *s->message;
    RefreshQueueId(ctx, &t);
    QuickAck(s);
    if (t.failure()) {
      const mail::Verdict failure = *t.failure();
      metrics::CountMessage(mail::ActionName(failure.action));
      s->message.reset();
      return Answer(ctx, failure, SMFIS_CONTINUE);
    }
    std::vector<std::string> unknown;
    mail::Verdict v = t.Finish([ctx] { smfi_progress(ctx); }, nullptr, &unknown);
    const mail::Envelope& e = t.envelope();
    const char* qid = e.queue_id.empty() ? "NOQUEUE" : e.queue_id.c_str();
    for (const std::string& rcpt : unknown) {
      LOG_WARNING("%s: save script refused <%s>, which is not a recipient of this message", qid,
                  rcpt.c_str());
    }
    if (t.spilled()) {
      metrics::CountSpill();
      LOG_DEBUG("%s: message spilled to an unlinked temp file in %s (%llu bytes encoded)", qid,
                t.filter().config().spool_directory.c_str(),
                static_cast<unsigned long long>(t.spool_size()));
    }
    ApplyEndOfMessage(ctx, s->leading_space, &v);
    metrics::CountMessage(mail::ActionName(v.action));
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.age()).count();
    LOG_INFO("%s: client=%s from=<%s> rcpts=%zu size=%llu key=%s verdict=%s%s%s%s%s time=%lldms",
             qid, e.client_ip.c_str(), e.mail_from.c_str(), e.recipients.size(),
             static_cast<unsigned long long>(e.message_size), e.idempotency_key.c_str(),
             mail::ActionName(v.action), v.smtp_code.empty() ? "" : " ", v.smtp_code.c_str(),
             v.reason.empty() ? "" : " reason=", v.reason.c_str(), static_cast<long long>(ms));
    const sfsistat answer = Answer(ctx, v, SMFIS_CONTINUE);
    s->message.reset();
    return answer;
  });
}

sfsistat OnAbort(SMFICTX* ctx) {
  if (Session* s = GetSession(ctx)) s->message.reset();
  return SMFIS_CONTINUE;
}

sfsistat OnClose(SMFICTX* ctx) {
  delete GetSession(ctx);
  smfi_setpriv(ctx, nullptr);
  return SMFIS_CONTINUE;
}

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

ScriptTarget MakeTarget(const std::string& filename) {
  ScriptTarget t;
  t.filename = filename;
  if (filename.empty()) return t;
  t.name = "/" + BaseName(filename);
  const size_t slash = filename.rfind('/');
  t.document_root = slash == 0 || slash == std::string::npos ? "/" : filename.substr(0, slash);
  return t;
}

// The metrics label of a failed request.
const char* BackendErrorKind(const fcgi::Result& r) {
  using Code = base::Status::Code;
  switch (r.status.code()) {
    case Code::kOk: return r.response.status / 100 != 2 ? "status" : "reply";
    case Code::kConnectFailed: return "connect";
    case Code::kTimeout: return "timeout";
    case Code::kIoError: return "io";
    case Code::kProtocolError: return "protocol";
    case Code::kTooLarge: return "too_large";
    case Code::kUnavailable: return "unavailable";
    case Code::kInvalidArgument: return "other";
  }
  return "other";
}

mail::FailurePolicy ToPolicy(config::FailureAction action) {
  switch (action) {
    case config::FailureAction::kTempfail: return mail::FailurePolicy::kTempfail;
    case config::FailureAction::kAccept: return mail::FailurePolicy::kAccept;
    case config::FailureAction::kReject: return mail::FailurePolicy::kReject;
  }
  return mail::FailurePolicy::kTempfail;
}

}  // namespace

base::Status BackendAddresses(const config::Config& config,
                              std::vector<fcgi::BackendAddress>* out) {
  out->clear();
  std::vector<config::BackendSpec> specs = config::Backends(config);
  for (const config::Route& r : config.routes) {
    specs.insert(specs.end(), r.fcgi_backends.begin(), r.fcgi_backends.end());
  }
  for (const config::BackendSpec& spec : specs) {
    fcgi::BackendAddress address;
    base::Status s = fcgi::BackendAddress::Parse(
        spec.type == config::ConnectionType::kTcp ? "tcp" : "unix", spec.address, &address);
    if (!s.ok()) return s;
    const std::string text = address.ToString();
    const bool seen = std::any_of(out->begin(), out->end(), [&text](const fcgi::BackendAddress& a) {
      return a.ToString() == text;
    });
    if (!seen) out->push_back(address);
  }
  return base::Status::Ok();
}

namespace {

base::Status CreatePool(const config::Config& config, const std::vector<config::BackendSpec>& specs,
                        std::shared_ptr<fcgi::BackendPool>* out) {
  fcgi::BackendPoolOptions options;
  for (const config::BackendSpec& spec : specs) {
    fcgi::BackendAddress address;
    base::Status s = fcgi::BackendAddress::Parse(
        spec.type == config::ConnectionType::kTcp ? "tcp" : "unix", spec.address, &address);
    if (!s.ok()) return s;
    options.addresses.push_back(address);
  }
  options.client.connect_timeout =
      std::chrono::milliseconds(static_cast<int64_t>(config.fcgi_connect_timeout * 1000));
  options.client.max_reply_bytes = config.max_reply_size;
  options.client.max_connections = config.fcgi_max_connections;
  options.client.keep_alive = config.fcgi_keep_alive;
  options.on_health_change = [](const fcgi::BackendAddress& backend, bool up,
                                const base::Status& why) {
    if (up) {
      LOG_INFO("FastCGI backend %s is back up", backend.ToString().c_str());
    } else {
      LOG_WARNING("FastCGI backend %s is down, skipped until it accepts connections: %s",
                  backend.ToString().c_str(), why.ToString().c_str());
    }
  };
  std::unique_ptr<fcgi::BackendPool> pool;
  if (base::Status s = fcgi::BackendPool::Create(options, &pool); !s.ok()) return s;
  *out = std::move(pool);
  return base::Status::Ok();
}

}  // namespace

base::Status Filter::Create(const config::Config& config, std::unique_ptr<Filter>* out) {
  std::unique_ptr<Filter> f(new Filter);
  f->config_ = config;
  if (base::Status s = CreatePool(config, config::Backends(config), &f->backends_); !s.ok()) {
    return s;
  }
  std::string server_name = config.server_name;
  if (server_name.empty()) {
    char host[256] = {0};
    if (gethostname(host, sizeof host - 1) == 0) server_name = host;
  }
  f->constant_params_ = {
      {"GATEWAY_INTERFACE", "CGI/1.1"},
      {"SERVER_SOFTWARE", "fcgi-milter/" FCGI_MILTER_VERSION},
      {"SERVER_PROTOCOL", "HTTP/1.1"},
      {"SERVER_NAME", server_name},
  };
  f->validate_ = MakeTarget(config.fcgi_script_filename_validate);
  f->save_ = MakeTarget(config.fcgi_script_filename_save);
  f->save_mode_ =
      config.save_mode == config::SaveMode::kRaw ? mail::SaveMode::kRaw : mail::SaveMode::kForm;
  f->validate_cache_ = std::make_unique<mail::VerdictCache>(config.validate_cache_size);
  f->validate_policy_ = ToPolicy(config.validate_failure_action);
  f->save_policy_ = ToPolicy(config.save_failure_action);
  const struct {
    const std::string& script;
    double timeout;
    config::FailureAction policy;
  } stages[] = {
      {config.fcgi_script_filename_connect, config.connect_timeout, config.connect_failure_action},
      {config.fcgi_script_filename_helo, config.helo_timeout, config.helo_failure_action},
      {config.fcgi_script_filename_mail, config.mail_timeout, config.mail_failure_action},
      {config.fcgi_script_filename_eoh, config.eoh_timeout, config.eoh_failure_action},
  };
  for (size_t i = 0; i < std::size(stages); ++i) {
    f->stage_calls_[i] = Call{MakeTarget(stages[i].script), f->backends_.get(), stages[i].timeout,
                              ToPolicy(stages[i].policy)};
  }
  for (const config::Route& r : config.routes) {
    RouteTargets t;
    t.validate = r.fcgi_script_filename_validate.empty()
                     ? f->validate_
                     : MakeTarget(r.fcgi_script_filename_validate);
    t.save =
        r.fcgi_script_filename_save.empty() ? f->save_ : MakeTarget(r.fcgi_script_filename_save);
    t.backends = f->backends_;
    if (!r.fcgi_backends.empty()) {
      if (base::Status s = CreatePool(config, r.fcgi_backends, &t.backends); !s.ok()) return s;
    }
    f->routes_.push_back(std::move(t));
  }
  *out = std::move(f);
  return base::Status::Ok();
}

void Filter::SetCurrent(std::shared_ptr<const Filter> filter) {
  std::shared_ptr<const Filter> old;  // destroyed after the lock: that joins a backend prober
  {
    std::lock_guard<std::mutex> lock(g_current_mutex);
    old = std::exchange(g_current, std::move(filter));
  }
}

std::shared_ptr<const Filter> Filter::Current() {
  std::lock_guard<std::mutex> lock(g_current_mutex);
  return g_current;
}

int Filter::RequestsInFlight() {
  return g_in_flight.load();
}

void Filter::BeginStop() {
  g_stopping = true;
}

int Filter::TransactionsOpen() {
  return Transaction::Open();
}

smfiDesc* Filter::Description() {
  static smfiDesc desc = {
      const_cast<char*>("fcgi-milter"),
      SMFI_VERSION,
      EditActions(),
      OnConnect,
      OnHelo,
      OnEnvFrom,
      OnEnvRcpt,
      OnHeader,
      OnEndOfHeaders,
      OnBody,
      OnEndOfMessage,
      OnAbort,
      OnClose,
      nullptr,  // unknown commands
      OnData,
      OnNegotiate,
  };
  return &desc;
}

fcgi::Params Filter::RequestParams(const ScriptTarget& script, const mail::Envelope& envelope,
                                   const char* method, std::string query,
                                   uint64_t content_length) const {
  fcgi::Params p = constant_params_;
  p.reserve(p.size() + 12);
  p.emplace_back("SCRIPT_FILENAME", script.filename);
  p.emplace_back("SCRIPT_NAME", script.name);
  p.emplace_back("DOCUMENT_ROOT", script.document_root);
  p.emplace_back("REQUEST_URI", query.empty() ? script.name : script.name + "?" + query);
  p.emplace_back("REQUEST_METHOD", method);
  p.emplace_back("QUERY_STRING", std::move(query));
  p.emplace_back("CONTENT_LENGTH", std::to_string(content_length));
  p.emplace_back("REMOTE_ADDR", envelope.client_ip);
  if (!envelope.client_name.empty()) p.emplace_back("REMOTE_HOST", envelope.client_name);
  return p;
}

int Filter::RouteOf(std::string_view recipient) const {
  if (routes_.empty()) return -1;
  const std::string domain = mail::RecipientDomain(recipient);
  for (size_t i = 0; i < config_.routes.size(); ++i) {
    for (const std::string& pattern : config_.routes[i].domains) {
      if (mail::DomainMatches(pattern, domain)) return static_cast<int>(i);
    }
  }
  return -1;
}

bool Filter::SameSave(int a, int b) const {
  if (a == b) return true;
  const Call x = SaveCall(a);
  const Call y = SaveCall(b);
  return x.script.filename == y.script.filename && x.backends == y.backends;
}

Filter::Call Filter::ValidateCall(int route) const {
  if (route < 0)
    return Call{validate_, backends_.get(), config_.validate_timeout, validate_policy_};
  const RouteTargets& r = routes_[static_cast<size_t>(route)];
  return Call{r.validate, r.backends.get(), config_.validate_timeout, validate_policy_};
}

Filter::Call Filter::SaveCall(int route) const {
  if (route < 0) return Call{save_, backends_.get(), config_.save_timeout, save_policy_};
  const RouteTargets& r = routes_[static_cast<size_t>(route)];
  return Call{r.save, r.backends.get(), config_.save_timeout, save_policy_};
}

namespace {

// At most the first `max` bytes of a request body, for `try` to show.
std::string ReadHead(const fcgi::Body& body, size_t max = 16384) {
  std::string head(std::min<uint64_t>(body.size(), max), '\0');
  size_t filled = 0;
  while (filled < head.size()) {
    size_t got = 0;
    if (!body.ReadAt(filled, head.data() + filled, head.size() - filled, &got).ok() || got == 0) {
      break;
    }
    filled += got;
  }
  head.resize(filled);
  return head;
}

// A cached verdict, marked as such in the log.
std::optional<mail::Verdict> FromCache(mail::VerdictCache* cache, const std::string& key) {
  std::optional<mail::Verdict> cached = cache->Find(key);
  if (cached) {
    metrics::CountValidateCache("hit");
    cached->reason += " (cached)";
  }
  return cached;
}

int StageSlot(mail::Stage stage) {
  switch (stage) {
    case mail::Stage::kConnect: return 0;
    case mail::Stage::kHelo: return 1;
    case mail::Stage::kMailFrom: return 2;
    case mail::Stage::kEndOfHeaders: return 3;
    case mail::Stage::kValidate:
    case mail::Stage::kSave: break;
  }
  return -1;
}

}  // namespace

mail::Verdict WithoutRequest(Exchange* trace, mail::Verdict v) {
  if (trace != nullptr) {
    trace->skipped = true;
    trace->verdict = v;
  }
  return v;
}

bool Filter::HasStageScript(mail::Stage stage) const {
  const int slot = StageSlot(stage);
  return slot >= 0 && stage_calls_[slot].script.configured();
}

mail::Verdict Filter::AskStage(mail::Stage stage, const mail::Envelope& envelope,
                               std::string headers, Exchange* trace) const {
  if (!HasStageScript(stage)) {
    mail::Verdict accept;
    accept.action = mail::Verdict::Action::kAccept;
    accept.reason = std::string("no ") + mail::StageName(stage) + " script configured";
    return WithoutRequest(trace, accept);
  }
  const Call& call = stage_calls_[StageSlot(stage)];
  if (stage == mail::Stage::kEndOfHeaders) {
    auto body = std::make_shared<fcgi::StringBody>(std::move(headers));
    fcgi::Params params = RequestParams(call.script, envelope, "POST",
                                        mail::BuildHeadersQuery(envelope), body->size());
    params.emplace_back("CONTENT_TYPE", "text/rfc822-headers");
    return Run(stage, call, std::move(params), std::move(body), nullptr, trace);
  }
  const bool with_helo = stage != mail::Stage::kConnect;
  const bool with_sender = stage == mail::Stage::kMailFrom;
  return Run(
      stage, call,
      RequestParams(call.script, envelope, "GET",
                    mail::BuildStageQuery(envelope, mail::StageName(stage), with_helo, with_sender),
                    0),
      nullptr, nullptr, trace);
}

mail::Verdict Filter::Run(mail::Stage stage, const Call& call, fcgi::Params params,
                          std::shared_ptr<const fcgi::Body> body,
                          const std::function<void()>& heartbeat, Exchange* trace) const {
  const ScriptTarget& script = call.script;
  const auto deadline =
      Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(call.timeout_seconds * 1000));
  if (trace != nullptr) {
    trace->params = params;
    trace->content_length = body ? body->size() : 0;
    // The start of the request body; `try` shows it (Save may have set a preview of its own).
    if (body && trace->form_preview.empty()) trace->form_preview = ReadHead(*body);
  }
  // Asking twice is harmless; a save may have stored the message.
  const fcgi::Idempotency idempotency = stage == mail::Stage::kSave
                                            ? fcgi::Idempotency::kNotIdempotent
                                            : fcgi::Idempotency::kIdempotent;
  fcgi::Result result;
  {
    InProgress request(&g_in_flight);
    result = call.backends->Execute(params, std::move(body), deadline, idempotency, heartbeat,
                                    std::chrono::seconds(10));
  }
  mail::BackendOutcome outcome;
  outcome.transport = result.status;
  outcome.http_status = result.response.status;
  outcome.content_type = result.response.Header("Content-Type");
  outcome.body = result.response.body;
  if (!result.response.stderr_output.empty()) {
    LOG_WARNING("%s script %s wrote to stderr: %s", mail::StageName(stage), script.filename.c_str(),
                result.response.stderr_output.c_str());
  }
  mail::Verdict v = mail::Decide(stage, outcome, call.policy);
  metrics::ObserveLatency(mail::StageName(stage),
                          static_cast<double>(result.elapsed.count()) / 1e6);
  if (v.backend_failure) {
    metrics::CountBackendError(BackendErrorKind(result));
    LOG_ERROR("%s script %s via %s failed: %s", mail::StageName(stage), script.filename.c_str(),
              call.backends->Describe().c_str(), v.reason.c_str());
  }
  LOG_DEBUG("%s script answered in %lld us after %d attempt(s): %s %s", mail::StageName(stage),
            static_cast<long long>(result.elapsed.count()), result.attempts,
            mail::ActionName(v.action), v.reason.c_str());
  if (trace != nullptr) {
    trace->result = std::move(result);
    trace->verdict = v;
  }
  return v;
}

// The validate verdict from the cache, from a concurrent session's request for the same key, or
// from the script.
mail::Verdict Filter::AskValidate(const Call& call, const mail::Envelope& envelope,
                                  const std::string& recipient, Exchange* trace) const {
  const std::string key = mail::VerdictCache::Key(recipient, envelope.mail_from);
  if (std::optional<mail::Verdict> cached = FromCache(validate_cache_.get(), key)) {
    return WithoutRequest(trace, *cached);
  }
  // Another session asking about the same recipient right now: wait for its answer (a
  // dictionary attack over many sessions would otherwise cost one request per session).
  const auto deadline =
      Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(call.timeout_seconds * 1000));
  // Only where answers are cached by default: waiting for an answer that will not be kept
  // would just queue the sessions one behind the other.
  const bool merge = config_.validate_cache_ttl > 0 && config_.validate_cache_size > 0;
  const bool lead = merge && validate_cache_->Lead(key, deadline);
  struct Landing {  // lands the lookup whichever way this scope is left
    mail::VerdictCache* cache;
    const std::string& key;
    bool active;
    ~Landing() {
      if (active) cache->Land(key);
    }
  } landing{validate_cache_.get(), key, lead};
  if (merge && !lead) {
    if (std::optional<mail::Verdict> cached = FromCache(validate_cache_.get(), key)) {
      return WithoutRequest(trace, *cached);
    }
  }
  metrics::CountValidateCache("miss");
  mail::Verdict v = Run(
      mail::Stage::kValidate, call,
      RequestParams(call.script, envelope, "GET", mail::BuildValidateQuery(envelope, recipient), 0),
      nullptr, nullptr, trace);
  const int ttl = v.cache_ttl_seconds.value_or(config_.validate_cache_ttl);
  (void)validate_cache_->Store(key, v, std::chrono::seconds(ttl));
  return v;
}

mail::Verdict Filter::Validate(const mail::Envelope& envelope, const std::string& recipient,
                               int route, Exchange* trace) const {
  mail::Verdict accept;
  accept.action = mail::Verdict::Action::kAccept;
  if (!mail::SaveHasRoomFor(save_mode_, config_.php_max_input_vars, envelope, recipient)) {
    // The save request would pass the script's max_input_vars (or, in raw mode, one FastCGI
    // params record): the sender delivers the rest in another transaction (RFC 5321's 452).
    return WithoutRequest(trace, mail::TooManyRecipients(envelope.recipients.size()));
  }
  const Call call = ValidateCall(route);
  if (!call.script.configured()) {
    accept.reason = "no validate script configured";
  } else if (config_.validate_skip_authenticated && !envelope.auth_login.empty()) {
    accept.reason = "sender authenticated as " + envelope.auth_login + ": not validated";
  } else if (config_.validate_skip_networks.Contains(envelope.client_ip)) {
    accept.reason = "client " + envelope.client_ip + " in validate_skip_networks: not validated";
  } else {
    return AskValidate(call, envelope, recipient, trace);
  }
  return WithoutRequest(trace, accept);
}

mail::Verdict Filter::Save(const mail::Envelope& envelope, int route,
                           std::shared_ptr<const fcgi::Body> encoded_message,
                           const std::function<void()>& heartbeat, Exchange* trace) const {
  std::shared_ptr<const fcgi::Body> body;
  std::string query;
  const char* content_type;
  if (save_mode_ == mail::SaveMode::kRaw) {
    // The message itself, streamed from the spool; the envelope in $_GET.
    query = mail::BuildSaveQuery(envelope);
    content_type = "message/rfc822";
    if (trace != nullptr) trace->form_preview = query;
    body = std::move(encoded_message);
  } else {
    // The body first: PHP stops parsing a form at max_input_vars, and it must never lose the body.
    std::string fields = mail::BuildSaveFormFields(envelope);
    content_type = "application/x-www-form-urlencoded";
    if (trace != nullptr) {
      // `try` shows the start of the message, then the fields that follow it.
      trace->form_preview =
          std::string(mail::kSaveFormBodyPrefix) + ReadHead(*encoded_message) + fields;
    }
    body = std::make_shared<fcgi::ConcatBody>(std::vector<std::shared_ptr<const fcgi::Body>>{
        std::make_shared<fcgi::StringBody>(std::string(mail::kSaveFormBodyPrefix)),
        std::move(encoded_message), std::make_shared<fcgi::StringBody>(std::move(fields))});
  }
  const Call call = SaveCall(route);
  fcgi::Params params =
      RequestParams(call.script, envelope, "POST", std::move(query), body->size());
  params.emplace_back("CONTENT_TYPE", content_type);
  return Run(mail::Stage::kSave, call, std::move(params), std::move(body), heartbeat, trace);
}

}  // namespace milter
