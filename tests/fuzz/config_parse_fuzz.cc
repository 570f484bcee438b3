// Fuzz target: the JSON configuration loader on arbitrary text. It must never throw or crash,
// must report something for every rejected file, and what it accepts must satisfy the checks the
// daemon relies on.
// Thread-safety: libFuzzer calls LLVMFuzzerTestOneInput from one thread.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "config/config.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const config::LoadResult result = config::Parse(text, "fuzz.json");
  if (!result.ok()) {
    for (const std::string& error : result.errors) {
      FUZZ_CHECK(!error.empty());
      FUZZ_CHECK(error.rfind("fuzz.json", 0) == 0);  // every error names its origin
    }
    return 0;
  }
  const config::Config& c = result.config;
  FUZZ_CHECK(!c.fcgi_connection_address.empty());
  FUZZ_CHECK(!c.fcgi_script_filename_save.empty());
  // Deadlines stay inside Postfix's own milter timeouts (30 s command, 300 s content).
  FUZZ_CHECK(c.fcgi_connect_timeout >= 0.1 && c.fcgi_connect_timeout <= 29);
  FUZZ_CHECK(c.validate_timeout >= 0.1 && c.validate_timeout <= 29);
  FUZZ_CHECK(c.save_timeout >= 0.1 && c.save_timeout <= 299);
  FUZZ_CHECK(c.fcgi_max_connections >= 1 && c.fcgi_max_connections <= 1024);
  FUZZ_CHECK(c.milter_socket_mode >= 0 && c.milter_socket_mode <= 07777);
  // Loading is deterministic: the same text gives the same verdict.
  FUZZ_CHECK(config::Parse(text, "fuzz.json").ok());
  return 0;
}
