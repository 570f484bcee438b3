// One SMTP transaction; see transaction.h.
#include "milter/transaction.h"

#include <strings.h>

#include <atomic>
#include <utility>

#include "milter/log.h"
#include "milter/mail/rfc2047.h"

namespace milter {
namespace {

std::atomic<int> g_open{0};

}  // namespace

Transaction::Transaction(std::shared_ptr<const Filter> filter, mail::Envelope envelope)
    : filter_(std::move(filter)), envelope_(std::move(envelope)) {
  g_open.fetch_add(1);
  const config::Config& cfg = filter_->config();
  spool_ = std::make_shared<fcgi::Spool>(cfg.spool_directory, cfg.spool_threshold);
  fcgi::Spool* spool = spool_.get();
  encoder_ = std::make_unique<mail::RawMessageEncoder>(
      cfg.body_line_endings == config::LineEnding::kCrlf ? mail::LineEnding::kCrlf
                                                         : mail::LineEnding::kLf,
      [spool](std::string_view encoded) { return spool->Append(encoded); },
      filter_->save_mode() == mail::SaveMode::kRaw ? mail::BodyEncoding::kRaw
                                                   : mail::BodyEncoding::kForm);
  if (filter_->HasStageScript(mail::Stage::kEndOfHeaders)) {
    std::string* headers = &headers_;
    header_encoder_ = std::make_unique<mail::RawMessageEncoder>(
        cfg.body_line_endings == config::LineEnding::kCrlf ? mail::LineEnding::kCrlf
                                                           : mail::LineEnding::kLf,
        [headers](std::string_view raw) {
          headers->append(raw);
          return base::Status::Ok();
        },
        mail::BodyEncoding::kRaw);
  }
}

Transaction::~Transaction() {
  g_open.fetch_sub(1);
}

int Transaction::Open() {
  return g_open.load();
}

mail::Verdict Transaction::AddRecipient(const std::string& recipient, Exchange* trace) {
  const int route = filter_->RouteOf(recipient);
  if (route_ && !filter_->SameSave(*route_, route)) {
    // One save request per message: a recipient whose save goes elsewhere comes separately.
    return WithoutRequest(trace, mail::OtherRoute(recipient));
  }
  mail::Verdict v = filter_->Validate(envelope_, recipient, route, trace);
  if (v.action == mail::Verdict::Action::kAccept) {
    envelope_.recipients.push_back(recipient);
    if (!route_) route_ = route;
  }
  return v;
}

void Transaction::Fail(mail::Verdict verdict) {
  if (failure_) return;
  failure_ = std::move(verdict);
  LOG_INFO("%s: message from %s: %s %s (%s)",
           envelope_.queue_id.empty() ? "NOQUEUE" : envelope_.queue_id.c_str(),
           envelope_.client_ip.c_str(), mail::ActionName(failure_->action),
           failure_->smtp_code.c_str(), failure_->reason.c_str());
}

// A failed spool write (disk full) or an oversize message ends the transaction.
void Transaction::Check(const base::Status& written) {
  if (failure_) return;
  const uint64_t limit = filter_->config().max_message_size;
  if (limit != 0 && encoder_->raw_size() > limit) {
    Fail(mail::MessageTooLarge(limit));
  } else if (!written.ok()) {
    Fail(mail::TemporaryFailure("cannot keep the message: " + written.ToString()));
  }
}

void Transaction::AddHeader(std::string_view name, std::string_view value,
                            bool value_has_leading_space) {
  if (!raw_subject_ && strcasecmp(std::string(name).c_str(), "Subject") == 0) {
    raw_subject_ = std::string(value);
  }
  if (failure_) return;
  Check(encoder_->AddHeader(name, value, value_has_leading_space));
  if (header_encoder_) {
    (void)header_encoder_->AddHeader(name, value, value_has_leading_space);  // cannot fail
  }
}

void Transaction::EndHeaders() {
  if (failure_) return;
  Check(encoder_->EndHeaders());
}

mail::Verdict Transaction::AskEndOfHeaders(Exchange* trace) {
  if (failure_ || !header_encoder_) {
    if (failure_) return WithoutRequest(trace, *failure_);
    mail::Verdict accept;
    accept.action = mail::Verdict::Action::kAccept;
    accept.reason = "no eoh script configured";
    return WithoutRequest(trace, accept);
  }
  (void)header_encoder_->Finish();  // the string sink cannot fail
  if (raw_subject_) envelope_.subject = mail::DecodeHeaderValue(*raw_subject_);
  return filter_->AskStage(mail::Stage::kEndOfHeaders, envelope_, std::move(headers_), trace);
}

void Transaction::AddBody(std::string_view chunk) {
  if (failure_) return;
  Check(encoder_->AddBody(chunk));
}

mail::Verdict Transaction::Finish(const std::function<void()>& heartbeat, Exchange* trace,
                                  std::vector<std::string>* unknown_refusals) {
  if (!failure_) Check(encoder_->Finish());
  if (failure_) return WithoutRequest(trace, *failure_);  // refused before the save
  envelope_.message_size = encoder_->raw_size();
  envelope_.idempotency_key = mail::IdempotencyKey(envelope_, encoder_->digest());
  if (raw_subject_) envelope_.subject = mail::DecodeHeaderValue(*raw_subject_);
  mail::Verdict v = filter_->Save(envelope_, route_.value_or(-1), spool_, heartbeat, trace);
  std::vector<std::string> unknown = mail::ResolveRefusals(envelope_.recipients, &v);
  if (unknown_refusals != nullptr) *unknown_refusals = std::move(unknown);
  if (trace != nullptr) trace->verdict = v;
  return v;
}

}  // namespace milter
