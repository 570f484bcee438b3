// The one room for what fcgi-milter relies on inside libmilter beyond its public API (mfapi.h),
// each with what it assumes and what happens when the assumption fails:
// - the MTA socket, read from libmilter's private context, to keep TCP ACKs immediate;
// - libmilter's listening socket, found among our descriptors and replaced by a dead one, so a
//   stop refuses new connections without setting libmilter's stop flag (which would end every
//   session at once in Debian's worker-pool build).
// Thread-safety: FindConnection may run on any session thread at once.
#pragma once

#include <libmilter/mfapi.h>

#include "config/config.h"

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

// The listening socket smfi_opensocket made for `cfg.milter_socket`: the one listening socket
// of the process right after it. -1 if there is not exactly one.
int FindListeningSocket(const config::Config& cfg);

// Refuses new MTA connections from now on without libmilter's stop (see the .cc for how), and
// wakes libmilter's listener so that it lets go of the old socket at once.
void StopAccepting(const config::Config& cfg, int listen_fd);

}  // namespace milter::libmilter
