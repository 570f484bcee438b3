// Rebuilds the raw message (header section, empty line, body) from libmilter's header and body
// callbacks and streams it into a sink: percent-encoded, ready to follow "body=" in the save
// form, or as it is, for a raw save request body. Line endings are normalised to LF (the original
// processor's format) or CRLF. A SHA-256 of the message as produced (before any encoding) is
// kept on the way, for the idempotency key.
// Thread-safety: one encoder per message, used by one thread at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "milter/mail/digest.h"

namespace mail {

enum class LineEnding { kLf, kCrlf };
// kForm: percent-encoded for the form's `body` field. kRaw: the bytes themselves.
enum class BodyEncoding { kForm, kRaw };

class RawMessageEncoder {
 public:
  // Receives the (encoded) bytes of the raw message, in order, in pieces of up to about
  // kFlushBytes. A non-ok Status is sticky: every later call returns it and the sink is not
  // called again.
  using Sink = std::function<base::Status(std::string_view encoded)>;
  static constexpr size_t kFlushBytes = 64 * 1024;

  RawMessageEncoder(LineEnding ending, Sink sink, BodyEncoding encoding = BodyEncoding::kForm);
  RawMessageEncoder(const RawMessageEncoder&) = delete;
  RawMessageEncoder& operator=(const RawMessageEncoder&) = delete;

  // `value` as libmilter gives it. With value_has_leading_space (SMFIP_HDR_LEADSPC granted) the
  // line is name + ":" + value, else name + ": " + value. Line breaks inside a folded value (bare
  // LF from Postfix, or CRLF) are written with the chosen ending. InvalidArgument after
  // EndHeaders.
  base::Status AddHeader(std::string_view name, std::string_view value,
                         bool value_has_leading_space);
  // The empty line between header and body. AddBody and Finish imply it if not called.
  base::Status EndHeaders();
  // Chunks of any size with CRLF endings; a CRLF pair may be split across two chunks.
  base::Status AddBody(std::string_view chunk);
  // Writes anything held back (a trailing CR) and flushes the sink. Idempotent.
  base::Status Finish();

  // Bytes of raw (unencoded) message produced so far.
  uint64_t raw_size() const { return raw_size_; }
  // SHA-256 of the raw (unencoded) message, after Finish().
  const Sha256::Digest& digest() const { return digest_; }

 private:
  enum class Phase { kHeaders, kBody, kFinished };

  // Encodes raw bytes into the buffer, handing full buffers to the sink.
  void Emit(std::string_view raw);
  void EmitNewline();
  void EmitWithEndings(std::string_view text);  // header values: any line break -> ending_
  void FlushIfFull();
  base::Status Flush();

  const LineEnding ending_;
  const BodyEncoding encoding_;
  Sink sink_;
  Sha256 hash_;
  Sha256::Digest digest_{};
  Phase phase_ = Phase::kHeaders;
  base::Status status_;  // first sink failure, sticky
  std::string buffer_;   // encoded bytes not yet given to the sink
  uint64_t raw_size_ = 0;
  bool pending_cr_ = false;   // kLf: body chunk ended in CR, its fate depends on the next byte
  bool last_was_cr_ = false;  // kCrlf: previous body byte was CR
};

}  // namespace mail
