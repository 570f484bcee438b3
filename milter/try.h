// `fcgi-milter try`: runs one message through the configured validate and save scripts without
// any MTA, and shows the script author what was sent, what came back, and what the MTA would
// answer. Exit status: 0 accepted, 1 refused, 2 temporary failure, 3 usage or config error.
// Thread-safety: runs on the main thread only.
#pragma once

namespace milter {

// argv[0] is "try".
int RunTry(int argc, char** argv);

}  // namespace milter
