// The libmilter glue: callbacks -> per-connection and per-message state -> one decision per
// stage -> SMTP reply. The callbacks read a process-wide Filter set up once before smfi_main.
// Thread-safety: libmilter runs one thread per MTA connection; a Session is touched only by
// its connection's thread, and Filter is read-only after Install().
#pragma once

#include <libmilter/mfapi.h>

#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "fcgi/backend_pool.h"
#include "fcgi/client.h"
#include "fcgi/protocol.h"
#include "milter/mail/decision.h"
#include "milter/mail/envelope.h"
#include "milter/mail/verdict_cache.h"

namespace milter {

// One FastCGI script as a web server would address it.
struct ScriptTarget {
  std::string filename;       // SCRIPT_FILENAME
  std::string name;           // SCRIPT_NAME: "/" + the file's base name
  std::string document_root;  // the file's directory
  bool configured() const { return !filename.empty(); }
};

// One request and its answer, kept for `fcgi-milter try` to show the script author.
struct Exchange {
  fcgi::Params params;
  std::string form_preview;  // the start of the POST body (form fields, body abbreviated)
  uint64_t content_length = 0;
  fcgi::Result result;
  mail::Verdict verdict;
  bool skipped = false;  // no request was made (no validate script, or a skip rule matched)
};

// A verdict given without a request (cached, skipped, refused before asking): recorded in
// *trace, if given, as such for `try`; returned.
mail::Verdict WithoutRequest(Exchange* trace, mail::Verdict v);

// Every FastCGI address a config names (fcgi_backends, or the single connection keys, and the
// routes' backends), each once.
base::Status BackendAddresses(const config::Config& config, std::vector<fcgi::BackendAddress>* out);

class Filter {
 public:
  // Builds the FastCGI client and the constant params. Fails on an unusable backend address.
  static base::Status Create(const config::Config& config, std::unique_ptr<Filter>* out);

  // The filter new transactions use. A transaction keeps the filter it started with, so a
  // reload (SetCurrent with a new filter) never changes a message half-way.
  static void SetCurrent(std::shared_ptr<const Filter> filter);
  static std::shared_ptr<const Filter> Current();
  // libmilter's callback table.
  static smfiDesc* Description();
  // FastCGI requests in progress across all filters.
  static int RequestsInFlight();
  // SMTP transactions open (MAIL FROM seen, end of message or abort not yet answered): a
  // graceful stop waits for them, so neither a message in DATA nor a save is cut.
  static int TransactionsOpen();
  // From now on every recipient gets 451 4.3.2: no new transaction starts while a stop drains.
  static void BeginStop();

  const config::Config& config() const { return config_; }
  // Whether a stage script is set for kConnect, kHelo, kMailFrom or kEndOfHeaders.
  bool HasStageScript(mail::Stage stage) const;
  // One stage-script request and its verdict (accept without a request when none is set):
  // connect, HELO and MAIL FROM are GETs with BuildStageQuery; end of headers is a POST of the
  // header section (`headers`, Content-Type text/rfc822-headers) with the save query string.
  mail::Verdict AskStage(mail::Stage stage, const mail::Envelope& envelope,
                         std::string headers = "", Exchange* trace = nullptr) const;
  // The route (an index into config().routes) a recipient's domain selects, or -1: the
  // top-level scripts and backends.
  int RouteOf(std::string_view recipient) const;
  // Whether recipients of routes a and b can share one message: the same save script on the
  // same backends.
  bool SameSave(int a, int b) const;
  const fcgi::BackendPool& backends() const { return *backends_; }
  mail::SaveMode save_mode() const { return save_mode_; }

  // One validate request for `recipient` and its verdict (accept without a request when no
  // validate script is set or a skip rule matches; 452 4.5.3 without a request when the
  // envelope already holds as many recipients as the save form can carry). *trace, if given,
  // records the exchange.
  // `route` is RouteOf(recipient), which the caller has already worked out.
  mail::Verdict Validate(const mail::Envelope& envelope, const std::string& recipient, int route,
                         Exchange* trace = nullptr) const;
  // One save request to `route`'s save script (every recipient of a message is on one save
  // route): the form prefix, then the already-encoded message from `encoded_message`.
  // heartbeat runs every few seconds while the script works (smfi_progress).
  mail::Verdict Save(const mail::Envelope& envelope, int route,
                     std::shared_ptr<const fcgi::Body> encoded_message,
                     const std::function<void()>& heartbeat = nullptr,
                     Exchange* trace = nullptr) const;

 private:
  Filter() = default;
  fcgi::Params RequestParams(const ScriptTarget& script, const mail::Envelope& envelope,
                             const char* method, std::string query, uint64_t content_length) const;
  // A script as one stage of one route uses it: where, on which backends, with what deadline and
  // what a backend failure means.
  struct Call {
    ScriptTarget script;
    fcgi::BackendPool* backends = nullptr;
    double timeout_seconds = 0;
    mail::FailurePolicy policy = mail::FailurePolicy::kTempfail;
  };
  struct RouteTargets {
    ScriptTarget validate;
    ScriptTarget save;
    std::shared_ptr<fcgi::BackendPool> backends;  // the top-level pool when the route has none
  };
  Call ValidateCall(int route) const;
  mail::Verdict AskValidate(const Call& call, const mail::Envelope& envelope,
                            const std::string& recipient, Exchange* trace) const;
  Call SaveCall(int route) const;
  mail::Verdict Run(mail::Stage stage, const Call& call, fcgi::Params params,
                    std::shared_ptr<const fcgi::Body> body, const std::function<void()>& heartbeat,
                    Exchange* trace) const;

  config::Config config_;
  std::shared_ptr<fcgi::BackendPool> backends_;
  fcgi::Params constant_params_;
  ScriptTarget validate_;
  ScriptTarget save_;
  mail::FailurePolicy validate_policy_ = mail::FailurePolicy::kTempfail;
  mail::FailurePolicy save_policy_ = mail::FailurePolicy::kTempfail;
  Call stage_calls_[4];               // connect, HELO, MAIL FROM, end of headers
  std::vector<RouteTargets> routes_;  // config().routes, in order
  mail::SaveMode save_mode_ = mail::SaveMode::kForm;
  std::unique_ptr<mail::VerdictCache> validate_cache_;  // this filter's: a reload starts empty
};

}  // namespace milter
