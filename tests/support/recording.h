// What the end-to-end suites share to compare MTAs on the same evidence: a save script that
// records every request (form fields as JSON, body as raw bytes), the reader for what it wrote,
// and a crafted message whose header whitespace, folding, encoded subject and leading dot the
// daemon must carry through untouched.
// Thread-safety: free functions and constants; call from the test thread.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace testing_support {

// PHP source: writes <DUMP_DIR>/<hrtime>.json (the $_POST fields but body, plus "_server" with
// REMOTE_ADDR, REQUEST_METHOD, CONTENT_TYPE, CONTENT_LENGTH, SERVER_SOFTWARE) and
// <hrtime>.body (the body field byte-exact), then answers SAVED.
extern const char* const kRecordingSaveScript;

// The same for a raw-mode save (save_mode "raw"): the fields are $_GET, the body is
// php://input copied in 64 KiB chunks; "_server" also has QUERY_STRING's length.
extern const char* const kRecordingRawSaveScript;

struct SavedMessage {
  nlohmann::json fields;
  std::string body;
};

// Everything kRecordingSaveScript wrote in dir, in arrival order.
std::vector<SavedMessage> ReadSavedMessages(const std::string& dir);

// A leading tab, trailing spaces, a folded header, an RFC 2047 subject in two encodings
// (decoded: "Héllowörld"), and a line the SMTP client must dot-stuff. LF line endings.
extern const char* const kCraftedMessage;

}  // namespace testing_support
