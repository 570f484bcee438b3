// The one room for what fcgi-milter relies on inside libmilter beyond its public API (mfapi.h),
// each with what it assumes and what happens when the assumption fails:
// - the MTA socket, read from libmilter's private context, to keep TCP ACKs immediate;
// - mi_stop(), exported but undeclared, to notice a stop request (see main.cc).
// Thread-safety: FindConnection may run on any session thread at once.
#pragma once

#include <libmilter/mfapi.h>

namespace milter::libmilter {

enum class Transport {
  kUnix,     // a unix socket: no Nagle stall to avoid
  kTcp,      // a TCP connection to our milter port: fd is set, quick ACKs work
  kUnknown,  // the context did not look as expected: the daemon answers every stage
};

struct Connection {
  Transport transport = Transport::kUnknown;
  int tcp_fd = -1;
};

// The socket that carries ctx's MTA connection. kTcp only when libmilter's context (8.14 to
// 8.17 layout) holds a connected TCP socket whose local port is `milter_port` (the configured
// inet:/inet6: port; 0 for a unix milter_socket). Anything else is kUnknown, logged once at
// warning level: the daemon then keeps working, but the MTA pays ~40 ms per message on inet:.
// FCGI_MILTER_NO_CONTEXT_PEEK=1 forces kUnknown (the tests show that fallback answers right).
Connection FindConnection(SMFICTX* ctx, int milter_port);

}  // namespace milter::libmilter
