// Small network helpers for fixtures: free ports and "is anybody listening yet" probes.
// Thread-safety: all functions are thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <utility>

namespace testing_support {

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close). Never hands
// out the same port twice in one test binary, so two fixtures asking in a row get different ports.
int FreeTcpPort();

// True if a connect() to 127.0.0.1:port / the unix socket at path succeeds right now.
bool CanConnectTcp(int port, const std::string& host = "127.0.0.1");
bool CanConnectUnix(const std::string& path);

// GET path from 127.0.0.1:port over HTTP/1.0: the status (0 when there was no answer) and body.
std::pair<int, std::string> HttpGet(int port, const std::string& path);
// Polls predicate every 10 ms until it returns true (true) or timeout passes (false).
bool WaitUntil(const std::function<bool()>& predicate, std::chrono::milliseconds timeout);

}  // namespace testing_support
