// MailLab; see mail_lab.h.
#include "tests/support/mail_lab.h"

#include <utility>

#include "tests/support/smtp_client.h"

namespace testing_support {

namespace {

std::string Script(PhpFpm& php, const std::string& name, const std::string& source) {
  if (source.empty()) return "";
  if (source.front() == '/') return php.CopyScript(source, name);
  return php.AddScript(name, source);
}

}  // namespace

::testing::AssertionResult MailLab::Start(Options o) {
  php_ = std::make_unique<PhpFpm>(o.php);
  const std::string validate = Script(*php_, "validate.php", o.validate);
  const std::string save = Script(*php_, "save.php", o.save);
  std::map<std::string, std::string> scripts;
  constexpr std::string_view kKey = "fcgi_script_filename_";
  for (const auto& [key, source] : o.scripts) {
    const bool configured = key.rfind(kKey, 0) == 0;
    scripts[key] = Script(*php_, configured ? key.substr(kKey.size()) + ".php" : key, source);
  }
  if (auto r = php_->Start(); !r) return r << "\n(starting php-fpm)";
  nlohmann::json config = BaseDaemonConfig(*php_, validate, save, tmp_.Mkdir("spool", 0700));
  for (const auto& [key, path] : scripts) {
    if (key.rfind(kKey, 0) == 0) config[key] = path;
  }
  for (auto& [k, v] : o.daemon.items()) config[k] = v;
  if (o.shape) o.shape(config, scripts);
  daemon_ = std::make_unique<MilterDaemon>(config);
  if (auto r = daemon_->Start(); !r) return r << "\n(starting the daemon)" << Diagnostics();
  Postfix::Options po;
  po.milters = daemon_->postfix_milters();
  po.extra_main_cf = std::move(o.main_cf);
  postfix_ = std::make_unique<Postfix>(po);
  if (auto r = postfix_->Start(); !r) return r << "\n(starting Postfix)" << Diagnostics();
  return ::testing::AssertionSuccess();
}

void MailLab::Stop() {
  if (postfix_) (void)postfix_->Stop();
  postfix_.reset();
  if (daemon_) daemon_->Stop();
  daemon_.reset();
  if (php_) php_->Stop();
  php_.reset();
}

std::vector<SavedMessage> MailLab::Saved() const {
  return ReadSavedMessages(php_->data_dir());
}

std::string MailLab::Diagnostics() const {
  return "\n--- daemon log ---\n" + Tail(daemon_ ? daemon_->log() : "") +
         "\n--- postfix log ---\n" + Tail(postfix_ ? postfix_->maillog() : "") +
         "\n--- php-fpm log ---\n" + Tail(php_ ? php_->error_log() : "");
}

std::string LargeMessage(const std::string& subject, size_t bytes, uint32_t seed) {
  std::string message = MakeMessage("sender@client.test", "big@example.test", subject, "");
  message.reserve(bytes + 100);
  uint32_t x = seed;
  while (message.size() < bytes) {
    std::string line;
    for (int i = 0; i < 76; ++i) {
      x = x * 1103515245 + 12345;
      line.push_back(static_cast<char>('!' + (x >> 16) % 94));
    }
    message += line + "\n";
  }
  return message;
}

}  // namespace testing_support
