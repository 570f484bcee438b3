// One SMTP transaction as the scripts see it, from MAIL FROM to end of message: the envelope,
// the message streamed into its spool, the requests it makes and the decision. The libmilter
// callbacks (filter.cc) and `fcgi-milter try` drive the same object, so what `try` shows is what
// the daemon does: the size limit, the Subject it decodes, the line endings, the recipient cap.
// Thread-safety: one Transaction per SMTP session thread; Open() may be read from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fcgi/body.h"
#include "milter/filter.h"
#include "milter/mail/decision.h"
#include "milter/mail/envelope.h"
#include "milter/mail/raw_message.h"

namespace milter {

class Transaction {
 public:
  // `envelope` holds the connection's facts and the sender; recipients come with AddRecipient.
  Transaction(std::shared_ptr<const Filter> filter, mail::Envelope envelope);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  // Transactions alive in this process (a graceful stop waits for them).
  static int Open();

  const Filter& filter() const { return *filter_; }
  const mail::Envelope& envelope() const { return envelope_; }
  void set_queue_id(std::string id) { envelope_.queue_id = std::move(id); }

  // RCPT TO: the validate verdict (or 452 4.5.3 when the save request cannot carry one more
  // recipient); an accepted recipient joins the envelope.
  mail::Verdict AddRecipient(const std::string& recipient, Exchange* trace = nullptr);

  // The message as the MTA hands it over. A failure (max_message_size, the spool) is kept:
  // failure() says whether the transaction can still be accepted.
  void AddHeader(std::string_view name, std::string_view value, bool value_has_leading_space);
  void EndHeaders();
  // The end-of-headers script's verdict on the envelope and the header section (accept without
  // a request when none is set, or when the transaction has already failed).
  mail::Verdict AskEndOfHeaders(Exchange* trace = nullptr);
  void AddBody(std::string_view chunk);
  const std::optional<mail::Verdict>& failure() const { return failure_; }
  // Records a failure from outside (an internal error at a stage the MTA does not wait on).
  // The first failure wins.
  void Fail(mail::Verdict verdict);

  // End of message: the kept failure, or the save request's verdict with the refused
  // recipients checked against the envelope (the ones that are not recipients go to *unknown).
  mail::Verdict Finish(const std::function<void()>& heartbeat, Exchange* trace,
                       std::vector<std::string>* unknown_refusals);

  bool spilled() const { return spool_->spilled(); }
  uint64_t spool_size() const { return spool_->size(); }
  std::chrono::steady_clock::duration age() const {
    return std::chrono::steady_clock::now() - started_;
  }

 private:
  void Check(const base::Status& written);

  std::shared_ptr<const Filter> filter_;  // the config this transaction started with
  mail::Envelope envelope_;
  std::shared_ptr<fcgi::Spool> spool_;
  std::unique_ptr<mail::RawMessageEncoder> encoder_;
  std::optional<std::string> raw_subject_;  // the first Subject header, as received
  std::optional<int> route_;                // the first accepted recipient's route
  // The header section for the end-of-headers script, kept only when one is set.
  std::string headers_;
  std::unique_ptr<mail::RawMessageEncoder> header_encoder_;
  std::optional<mail::Verdict> failure_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

}  // namespace milter
