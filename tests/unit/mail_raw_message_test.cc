// Unit tests for milter/mail/raw_message.h: the rebuilt raw message (header whitespace kept,
// line endings normalised across chunk boundaries) and the batched, percent-encoded output.
#include "milter/mail/raw_message.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace mail {
namespace {

int Nibble(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Strict decoder for what the encoder may produce: unreserved bytes and %XX, uppercase.
bool PercentDecode(const std::string& in, std::string* out) {
  out->clear();
  out->reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = Nibble(in[i + 1]);
      const int lo = Nibble(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi << 4 | lo));
      i += 2;
    } else if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '.' || c == '_' || c == '~') {
      out->push_back(c);
    } else {
      return false;
    }
  }
  return true;
}

struct Collector {
  std::string encoded;
  std::vector<size_t> piece_sizes;
  RawMessageEncoder::Sink Sink() {
    return [this](std::string_view piece) {
      encoded.append(piece);
      piece_sizes.push_back(piece.size());
      return base::Status::Ok();
    };
  }
  std::string Raw() const {
    std::string raw;
    EXPECT_TRUE(PercentDecode(encoded, &raw)) << "output is not strict percent-encoding";
    return raw;
  }
};

TEST(RawMessageEncoderTest, HeaderWithLeadingSpaceFlagKeepsTabAndTrailingSpaces) {
  Collector c;
  RawMessageEncoder enc(LineEnding::kLf, c.Sink());
  ASSERT_TRUE(enc.AddHeader("Subject", "\tHello  ", true).ok());
  ASSERT_TRUE(enc.AddHeader("X-Empty", "", true).ok());
  ASSERT_TRUE(enc.EndHeaders().ok());
  ASSERT_TRUE(enc.Finish().ok());
  EXPECT_EQ(c.Raw(), "Subject:\tHello  \nX-Empty:\n\n");
}

TEST(RawMessageEncoderTest, HeaderWithoutLeadingSpaceFlagGetsColonSpace) {
  Collector c;
  RawMessageEncoder enc(LineEnding::kLf, c.Sink());
  ASSERT_TRUE(enc.AddHeader("From", "a@example.test", false).ok());
  ASSERT_TRUE(enc.Finish().ok());
  EXPECT_EQ(c.Raw(), "From: a@example.test\n\n");
}

TEST(RawMessageEncoderTest, FoldedHeaderWithBareLfUsesChosenEnding) {
  Collector lf;
  RawMessageEncoder enc_lf(LineEnding::kLf, lf.Sink());
  EXPECT_TRUE(enc_lf.AddHeader("Received", " from a\n\tby b\r\n (c)", true).ok());
  EXPECT_TRUE(enc_lf.Finish().ok());
  EXPECT_EQ(lf.Raw(), "Received: from a\n\tby b\n (c)\n\n");

  Collector crlf;
  RawMessageEncoder enc_crlf(LineEnding::kCrlf, crlf.Sink());
  EXPECT_TRUE(enc_crlf.AddHeader("Received", " from a\n\tby b\r\n (c)", true).ok());
  EXPECT_TRUE(enc_crlf.Finish().ok());
  EXPECT_EQ(crlf.Raw(), "Received: from a\r\n\tby b\r\n (c)\r\n\r\n");
}

TEST(RawMessageEncoderTest, LfModeTurnsCrlfIntoLfAndKeepsLoneCr) {
  Collector c;
  RawMessageEncoder enc(LineEnding::kLf, c.Sink());
  EXPECT_TRUE(enc.EndHeaders().ok());
  EXPECT_TRUE(enc.AddBody("line1\r\nlone\rcr\r\r\nbare\nend").ok());
  EXPECT_TRUE(enc.Finish().ok());
  EXPECT_EQ(c.Raw(), "\nline1\nlone\rcr\r\nbare\nend");
}

TEST(RawMessageEncoderTest, LfModeJoinsCrlfSplitAcrossChunks) {
  Collector c;
  RawMessageEncoder enc(LineEnding::kLf, c.Sink());
  EXPECT_TRUE(enc.EndHeaders().ok());
  EXPECT_TRUE(enc.AddBody("a\r").ok());
  EXPECT_TRUE(enc.AddBody("\nb\r").ok());
  EXPECT_TRUE(enc.AddBody("").ok());
  EXPECT_TRUE(enc.AddBody("\r").ok());  // the first CR was lone
  EXPECT_TRUE(enc.AddBody("\n\r").ok());
  EXPECT_TRUE(enc.Finish().ok());  // a CR at the very end is content
  EXPECT_EQ(c.Raw(), "\na\nb\r\n\r");
}

TEST(RawMessageEncoderTest, CrlfModeTurnsBareLfIntoCrlfAndKeepsCrlf) {
  Collector c;
  RawMessageEncoder enc(LineEnding::kCrlf, c.Sink());
  EXPECT_TRUE(enc.AddHeader("A", " b", true).ok());
  EXPECT_TRUE(enc.EndHeaders().ok());
  EXPECT_TRUE(enc.AddBody("x\r\ny\nz\rw\n\n").ok());
  EXPECT_TRUE(enc.Finish().ok());
  EXPECT_EQ(c.Raw(), "A: b\r\n\r\nx\r\ny\r\nz\rw\r\n\r\n");
}

TEST(RawMessageEncoderTest, CrlfModeDoesNotDoubleCrSplitAcrossChunks) {
  Collector c;
  RawMessageEncoder enc(LineEnding::kCrlf, c.Sink());
  EXPECT_TRUE(enc.EndHeaders().ok());
  EXPECT_TRUE(enc.AddBody("a\r").ok());
  EXPECT_TRUE(enc.AddBody("\nb").ok());
  EXPECT_TRUE(enc.AddBody("\n").ok());
  EXPECT_TRUE(enc.Finish().ok());
  EXPECT_EQ(c.Raw(), "\r\na\r\nb\r\n");
}

TEST(RawMessageEncoderTest, EmptyBodyEndsWithTheSeparatorLine) {
  Collector c;
  RawMessageEncoder enc(LineEnding::kLf, c.Sink());
  EXPECT_TRUE(enc.AddHeader("Subject", " hi", true).ok());
  EXPECT_TRUE(enc.EndHeaders().ok());
  ASSERT_TRUE(enc.Finish().ok());
  EXPECT_EQ(c.Raw(), "Subject: hi\n\n");
  EXPECT_EQ(enc.raw_size(), 13u);
}

TEST(RawMessageEncoderTest, MessageWithoutHeadersStartsWithEmptyLine) {
  Collector c;
  RawMessageEncoder enc(LineEnding::kLf, c.Sink());
  EXPECT_TRUE(enc.EndHeaders().ok());
  EXPECT_TRUE(enc.AddBody("body\r\n").ok());
  EXPECT_TRUE(enc.Finish().ok());
  EXPECT_EQ(c.Raw(), "\nbody\n");
}

TEST(RawMessageEncoderTest, BodyWithoutEndHeadersImpliesSeparator) {
  Collector c;
  RawMessageEncoder enc(LineEnding::kLf, c.Sink());
  EXPECT_TRUE(enc.AddHeader("A", " b", true).ok());
  EXPECT_TRUE(enc.AddBody("x\r\n").ok());
  EXPECT_TRUE(enc.Finish().ok());
  EXPECT_EQ(c.Raw(), "A: b\n\nx\n");
}

TEST(RawMessageEncoderTest, HeaderAfterEndHeadersIsRejected) {
  Collector c;
  RawMessageEncoder enc(LineEnding::kLf, c.Sink());
  EXPECT_TRUE(enc.EndHeaders().ok());
  EXPECT_EQ(enc.AddHeader("Late", " x", true).code(), base::Status::Code::kInvalidArgument);
  EXPECT_TRUE(enc.Finish().ok());
  EXPECT_EQ(enc.AddBody("x").code(), base::Status::Code::kInvalidArgument);
  EXPECT_EQ(c.Raw(), "\n");
}

TEST(RawMessageEncoderTest, OutputIsPercentEncodedForTheForm) {
  Collector c;
  RawMessageEncoder enc(LineEnding::kLf, c.Sink());
  EXPECT_TRUE(enc.AddHeader("Subject", " a&b=c+d 100%", true).ok());
  EXPECT_TRUE(enc.Finish().ok());
  EXPECT_EQ(c.encoded, "Subject%3A%20a%26b%3Dc%2Bd%20100%25%0A%0A");
}

TEST(RawMessageEncoderTest, NothingReachesSinkBeforeFinishForSmallMessage) {
  Collector c;
  RawMessageEncoder enc(LineEnding::kLf, c.Sink());
  EXPECT_TRUE(enc.AddHeader("A", " b", true).ok());
  EXPECT_TRUE(enc.AddBody("small\r\n").ok());
  EXPECT_TRUE(c.piece_sizes.empty());
  EXPECT_TRUE(enc.Finish().ok());
  EXPECT_EQ(c.piece_sizes.size(), 1u);
  EXPECT_TRUE(enc.Finish().ok());
  EXPECT_EQ(c.piece_sizes.size(), 1u) << "Finish must be idempotent";
}

TEST(RawMessageEncoderTest, SinkFailureIsStickyAndStopsOutput) {
  int calls = 0;
  RawMessageEncoder enc(LineEnding::kLf, [&calls](std::string_view) {
    ++calls;
    return base::Status::IoError("backend went away");
  });
  EXPECT_TRUE(enc.EndHeaders().ok());
  const std::string chunk(64 * 1024, '\xff');
  base::Status s = enc.AddBody(chunk);
  EXPECT_EQ(s.code(), base::Status::Code::kIoError);
  EXPECT_EQ(enc.AddBody(chunk).code(), base::Status::Code::kIoError);
  EXPECT_EQ(enc.Finish().code(), base::Status::Code::kIoError);
  EXPECT_EQ(calls, 1);
}

// Reference conversion of a whole CRLF body, written the slow obvious way.
std::string Expected(const std::string& body, LineEnding ending) {
  std::string out;
  for (size_t i = 0; i < body.size(); ++i) {
    const bool crlf = body[i] == '\r' && i + 1 < body.size() && body[i + 1] == '\n';
    if (ending == LineEnding::kLf) {
      if (crlf) continue;  // the LF follows
      out.push_back(body[i]);
    } else {
      if (body[i] == '\n' && (i == 0 || body[i - 1] != '\r')) out.push_back('\r');
      out.push_back(body[i]);
    }
  }
  return out;
}

void RoundTripLargeBody(LineEnding ending) {
  // 5 MiB of text lines with CRLF, lone CRs, bare LFs and 8-bit bytes, in odd-sized chunks.
  std::string body;
  uint32_t x = 2463534242u;
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
  };
  while (body.size() < 5u * 1024 * 1024) {
    const uint32_t r = next();
    switch (r % 16) {
      case 0:
      case 1:
      case 2: body += "\r\n"; break;
      case 3: body += '\r'; break;
      case 4: body += '\n'; break;
      default: body += static_cast<char>(r >> 24); break;
    }
  }
  Collector c;
  RawMessageEncoder enc(ending, c.Sink());
  ASSERT_TRUE(enc.AddHeader("Subject", " big", true).ok());
  ASSERT_TRUE(enc.EndHeaders().ok());
  for (size_t pos = 0; pos < body.size();) {
    const size_t n = std::min<size_t>(body.size() - pos, 1 + next() % 70000);
    ASSERT_TRUE(enc.AddBody(std::string_view(body).substr(pos, n)).ok());
    pos += n;
  }
  ASSERT_TRUE(enc.Finish().ok());

  const std::string nl = ending == LineEnding::kLf ? "\n" : "\r\n";
  const std::string expected = "Subject: big" + nl + nl + Expected(body, ending);
  const std::string raw = c.Raw();
  EXPECT_EQ(raw.size(), expected.size());
  EXPECT_TRUE(raw == expected) << "5 MiB body differs after decoding";
  EXPECT_EQ(enc.raw_size(), expected.size());

  // Batched: few large pieces, each bounded.
  EXPECT_LE(c.piece_sizes.size(), c.encoded.size() / RawMessageEncoder::kFlushBytes + 1);
  for (size_t s : c.piece_sizes) EXPECT_LE(s, RawMessageEncoder::kFlushBytes + 3 * 16 * 1024);
}

TEST(RawMessageEncoderTest, LargeBodyRoundTripsInLfMode) {
  RoundTripLargeBody(LineEnding::kLf);
}

TEST(RawMessageEncoderTest, LargeBodyRoundTripsInCrlfMode) {
  RoundTripLargeBody(LineEnding::kCrlf);
}

}  // namespace
}  // namespace mail

namespace mail {
namespace {

// Raw mode sends what the form's `body` field carries, byte for byte, unencoded; the digest is
// that of those bytes in either mode.
TEST(RawMessageEncoderRawModeTest, RawOutputIsTheDecodedFormBodyAndTheDigestCoversIt) {
  for (const LineEnding ending : {LineEnding::kLf, LineEnding::kCrlf}) {
    std::string form, raw;
    RawMessageEncoder f(
        ending,
        [&](std::string_view p) {
          form.append(p);
          return base::Status::Ok();
        },
        BodyEncoding::kForm);
    RawMessageEncoder r(
        ending,
        [&](std::string_view p) {
          raw.append(p);
          return base::Status::Ok();
        },
        BodyEncoding::kRaw);
    const std::string big(200000, '\xE9');
    for (RawMessageEncoder* e : {&f, &r}) {
      ASSERT_TRUE(e->AddHeader("Subject", " a&b=c%\r\n\tfolded", true).ok());
      ASSERT_TRUE(e->AddBody(std::string_view("line one\r\nline\0two\r", 19)).ok());
      ASSERT_TRUE(e->AddBody("\n" + big + "\r\n").ok());
      ASSERT_TRUE(e->Finish().ok());
    }
    std::string decoded;
    ASSERT_TRUE(PercentDecode(form, &decoded));
    EXPECT_EQ(raw, decoded);
    EXPECT_EQ(r.raw_size(), raw.size());
    Sha256 h;
    h.Update(raw);
    EXPECT_EQ(Sha256::Hex(r.digest()), Sha256::Hex(h.Finish()));
    EXPECT_EQ(Sha256::Hex(f.digest()), Sha256::Hex(r.digest()));
  }
}

}  // namespace
}  // namespace mail
