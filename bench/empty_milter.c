/* empty_milter: a libmilter filter that does nothing, the baseline for fcgi-milter's figures.
 * Every callback returns SMFIS_CONTINUE. A DATA callback is registered on purpose: without it
 * libmilter negotiates SMFIP_NODATA, Postfix sends the DATA macros unanswered and its next small
 * packet waits ~40 ms under Nagle/delayed ACK on inet: sockets (docs/platform-notes.md, Postfix).
 * Usage: empty_milter SOCKET   (libmilter syntax: unix:/path or inet:PORT@HOST)
 * Thread-safety: libmilter runs one thread per MTA connection; the callbacks keep no state. */
#include <libmilter/mfapi.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static sfsistat OnConnect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr) {
  (void)ctx; (void)host; (void)addr;
  return SMFIS_CONTINUE;
}
static sfsistat OnHelo(SMFICTX *ctx, char *helo) {
  (void)ctx; (void)helo;
  return SMFIS_CONTINUE;
}
static sfsistat OnEnvelope(SMFICTX *ctx, char **argv) {
  (void)ctx; (void)argv;
  return SMFIS_CONTINUE;
}
static sfsistat OnHeader(SMFICTX *ctx, char *name, char *value) {
  (void)ctx; (void)name; (void)value;
  return SMFIS_CONTINUE;
}
static sfsistat OnBody(SMFICTX *ctx, unsigned char *chunk, size_t len) {
  (void)ctx; (void)chunk; (void)len;
  return SMFIS_CONTINUE;
}
static sfsistat OnStage(SMFICTX *ctx) {
  (void)ctx;
  return SMFIS_CONTINUE;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s unix:/path | inet:PORT@HOST\n", argv[0]);
    return 2;
  }
  struct smfiDesc desc;
  memset(&desc, 0, sizeof desc);
  desc.xxfi_name = "empty_milter";
  desc.xxfi_version = SMFI_VERSION;
  desc.xxfi_flags = 0;
  desc.xxfi_connect = OnConnect;
  desc.xxfi_helo = OnHelo;
  desc.xxfi_envfrom = OnEnvelope;
  desc.xxfi_envrcpt = OnEnvelope;
  desc.xxfi_header = OnHeader;
  desc.xxfi_eoh = OnStage;
  desc.xxfi_body = OnBody;
  desc.xxfi_eom = OnStage;
  desc.xxfi_abort = OnStage;
  desc.xxfi_close = OnStage;
  desc.xxfi_data = OnStage;
  if (smfi_setconn(argv[1]) != MI_SUCCESS || smfi_register(desc) != MI_SUCCESS ||
      smfi_opensocket(1) != MI_SUCCESS) {
    fprintf(stderr, "empty_milter: cannot listen on %s\n", argv[1]);
    return 1;
  }
  if (strncmp(argv[1], "unix:", 5) == 0) chmod(argv[1] + 5, 0666); /* smtpd runs as postfix */
  return smfi_main() == MI_SUCCESS ? 0 : 1;
}
