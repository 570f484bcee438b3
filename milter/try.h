// `fcgi-milter try`: runs one message through the configured scripts (connect, HELO, MAIL FROM,
// validate per recipient, end of headers, save, in the daemon's order) without any MTA, and shows
// the script author what was sent, what came back, what the MTA would answer and every edit a
// save reply asks for (none is applied). A refusal stops the run where the MTA would.
// Exit status: 0 accepted, 1 refused, 2 temporary failure, 3 usage or config error.
// Thread-safety: runs on the main thread only.
#pragma once

namespace milter {

// argv[0] is "try".
int RunTry(int argc, char** argv);

}  // namespace milter
