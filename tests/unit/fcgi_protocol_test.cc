// The FastCGI wire format: records, name-value pairs, request heads, the record reader, and the
// response collector and CGI parser, including malformed and truncated input.
#include <gtest/gtest.h>

#include <string>

#include "fcgi/body.h"
#include "fcgi/protocol.h"
#include "fcgi/response.h"

namespace fcgi {
namespace {

using protocol::RecordReader;
using protocol::RecordType;

std::vector<RecordReader::Record> ReadAll(RecordReader* reader, std::vector<std::string>* storage) {
  std::vector<RecordReader::Record> records;
  for (;;) {
    std::optional<RecordReader::Record> r;
    EXPECT_TRUE(reader->Next(&r).ok());
    if (!r) break;
    storage->emplace_back(r->content);
    records.push_back({r->type, r->request_id, storage->back()});
  }
  return records;
}

TEST(FcgiRecord, HeaderRoundTripsEveryField) {
  protocol::RecordHeader h;
  h.type = RecordType::kStderr;
  h.request_id = 0xBEEF;
  h.content_length = 0xABCD;
  h.padding_length = 7;
  uint8_t raw[8];
  protocol::EncodeHeader(h, raw);
  const auto back = protocol::DecodeHeader(raw);
  EXPECT_EQ(back.version, 1);
  EXPECT_EQ(back.type, RecordType::kStderr);
  EXPECT_EQ(back.request_id, 0xBEEF);
  EXPECT_EQ(back.content_length, 0xABCD);
  EXPECT_EQ(back.padding_length, 7);
}

TEST(FcgiRecord, PadsContentToMultipleOfEight) {
  for (size_t n : {0u, 1u, 7u, 8u, 9u, 65535u}) {
    std::string out;
    protocol::AppendRecord(&out, RecordType::kStdin, 1, std::string(n, 'x'));
    EXPECT_EQ(out.size() % 8, 0u) << n;
    EXPECT_EQ(out.size(), 8 + n + (8 - n % 8) % 8) << n;
  }
}

TEST(FcgiRecord, ReaderSplitsRecordsFedOneByteAtATime) {
  std::string wire;
  protocol::AppendRecord(&wire, RecordType::kStdout, 1, "hello");
  protocol::AppendRecord(&wire, RecordType::kStderr, 1, "");
  protocol::AppendRecord(&wire, RecordType::kStdout, 1, std::string(70000 % 65536, 'z'));
  RecordReader reader;
  std::vector<std::string> storage;
  storage.reserve(16);
  std::vector<RecordReader::Record> got;
  for (char c : wire) {
    reader.Feed(&c, 1);
    auto more = ReadAll(&reader, &storage);
    got.insert(got.end(), more.begin(), more.end());
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].type, RecordType::kStdout);
  EXPECT_EQ(storage[0], "hello");
  EXPECT_EQ(got[1].type, RecordType::kStderr);
  EXPECT_EQ(storage[1], "");
  EXPECT_EQ(storage[2].size(), 70000u % 65536);
  EXPECT_EQ(reader.buffered(), 0u);
}

TEST(FcgiRecord, ReaderWaitsOnTruncatedRecord) {
  std::string wire;
  protocol::AppendRecord(&wire, RecordType::kStdout, 1, "truncated body");
  RecordReader reader;
  reader.Feed(wire.data(), wire.size() - 3);
  std::optional<RecordReader::Record> r;
  ASSERT_TRUE(reader.Next(&r).ok());
  EXPECT_FALSE(r.has_value());
  EXPECT_EQ(reader.buffered(), wire.size() - 3);
}

TEST(FcgiRecord, ReaderRejectsWrongVersion) {
  std::string wire = "HTTP/1.1 200 OK\r\n\r\n";
  RecordReader reader;
  reader.Feed(wire.data(), wire.size());
  std::optional<RecordReader::Record> r;
  Status s = reader.Next(&r);
  EXPECT_EQ(s.code(), Status::Code::kProtocolError);
  EXPECT_NE(s.message().find("version"), std::string::npos);
}

TEST(FcgiNameValue, RoundTripsShortAndLongLengths) {
  Params in = {{"A", "b"},
               {std::string(127, 'n'), std::string(128, 'v')},
               {std::string(300, 'N'), ""},
               {"EMPTY", ""},
               {"BIN", std::string("\0\xff\x80", 3)},
               {"BIG", std::string(70000, 'q')}};
  std::string wire;
  for (const auto& [k, v] : in) protocol::AppendNameValue(&wire, k, v);
  Params out;
  ASSERT_TRUE(protocol::DecodeNameValues(wire, &out).ok());
  EXPECT_EQ(out, in);
}

TEST(FcgiNameValue, UsesFourByteLengthFrom128) {
  std::string wire;
  protocol::AppendNameValue(&wire, std::string(128, 'a'), "b");
  ASSERT_GE(wire.size(), 5u);
  EXPECT_EQ(static_cast<uint8_t>(wire[0]), 0x80);
  EXPECT_EQ(static_cast<uint8_t>(wire[3]), 128);
  EXPECT_EQ(static_cast<uint8_t>(wire[4]), 1);
}

TEST(FcgiNameValue, RejectsTruncatedPairs) {
  std::string wire;
  protocol::AppendNameValue(&wire, "NAME", "value");
  for (size_t cut = 1; cut < wire.size(); ++cut) {
    Params out;
    EXPECT_EQ(protocol::DecodeNameValues(wire.substr(0, cut), &out).code(),
              Status::Code::kProtocolError)
        << cut;
  }
  std::string long_len = "\x80\x00";  // a 4-byte length cut after two bytes
  Params out;
  EXPECT_FALSE(protocol::DecodeNameValues(long_len, &out).ok());
}

TEST(FcgiRequest, HeadHasBeginParamsAndEmptyParams) {
  std::string wire;
  ASSERT_TRUE(protocol::EncodeRequestHead(1, {{"SCRIPT_FILENAME", "/x.php"}}, true, &wire).ok());
  RecordReader reader;
  reader.Feed(wire.data(), wire.size());
  std::vector<std::string> storage;
  storage.reserve(8);
  auto records = ReadAll(&reader, &storage);
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0].type, RecordType::kBeginRequest);
  ASSERT_EQ(storage[0].size(), 8u);
  EXPECT_EQ(storage[0][1], 1);  // responder
  EXPECT_EQ(storage[0][2], 1);  // keep-conn flag
  EXPECT_EQ(records[1].type, RecordType::kParams);
  Params params;
  ASSERT_TRUE(protocol::DecodeNameValues(storage[1], &params).ok());
  EXPECT_EQ(params, (Params{{"SCRIPT_FILENAME", "/x.php"}}));
  EXPECT_EQ(records[2].type, RecordType::kParams);
  EXPECT_TRUE(storage[2].empty());
}

TEST(FcgiRequest, ParamsLargerThanOneRecordAreRefused) {
  std::string wire;
  Status s = protocol::EncodeRequestHead(1, {{"Q", std::string(70000, 'x')}}, false, &wire);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_TRUE(wire.empty());
}

std::string EndRequest(uint32_t app, uint8_t proto) {
  std::string body = {static_cast<char>(app >> 24),
                      static_cast<char>(app >> 16),
                      static_cast<char>(app >> 8),
                      static_cast<char>(app),
                      static_cast<char>(proto),
                      0,
                      0,
                      0};
  return body;
}

Status Collect(const std::string& wire, Response* out, size_t max_stdout = 1 << 20) {
  RecordReader reader;
  reader.Feed(wire.data(), wire.size());
  ResponseCollector collector(1, max_stdout, 16);
  for (;;) {
    std::optional<RecordReader::Record> r;
    Status s = reader.Next(&r);
    if (!s.ok()) return s;
    if (!r) break;
    s = collector.Consume(*r);
    if (!s.ok()) return s;
  }
  return collector.Finish(out);
}

TEST(FcgiResponse, KeepsStderrApartFromStdoutEvenWhenItComesFirst) {
  std::string wire;
  protocol::AppendRecord(&wire, RecordType::kStderr, 1, "PHP message: warn");
  protocol::AppendRecord(&wire, RecordType::kStdout, 1, "Content-type: text/html\r\n\r\nPA");
  protocol::AppendRecord(&wire, RecordType::kStdout, 1, "SS");
  protocol::AppendRecord(&wire, RecordType::kEndRequest, 1, EndRequest(0, 0));
  Response r;
  ASSERT_TRUE(Collect(wire, &r).ok());
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "PASS");
  EXPECT_EQ(r.stderr_output, "PHP message: war [truncated]");
  EXPECT_EQ(r.Header("content-TYPE"), "text/html");
}

TEST(FcgiResponse, HonoursStatusHeader) {
  std::string wire;
  protocol::AppendRecord(&wire, RecordType::kStdout, 1,
                         "Status: 404 Not Found\nContent-type: text/html\n\nFile not found.\n");
  protocol::AppendRecord(&wire, RecordType::kEndRequest, 1, EndRequest(0, 0));
  Response r;
  ASSERT_TRUE(Collect(wire, &r).ok());
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.body, "File not found.\n");
}

TEST(FcgiResponse, MissingEndRequestIsAnError) {
  std::string wire;
  protocol::AppendRecord(&wire, RecordType::kStdout, 1, "Content-type: x\r\n\r\nSAVED");
  Response r;
  EXPECT_EQ(Collect(wire, &r).code(), Status::Code::kProtocolError);
}

TEST(FcgiResponse, OverloadedBackendIsUnavailable) {
  std::string wire;
  protocol::AppendRecord(&wire, RecordType::kEndRequest, 1, EndRequest(0, 2));
  Response r;
  EXPECT_EQ(Collect(wire, &r).code(), Status::Code::kUnavailable);
}

TEST(FcgiResponse, ShortEndRequestBodyIsAProtocolError) {
  std::string wire;
  protocol::AppendRecord(&wire, RecordType::kEndRequest, 1, std::string("\0\0\0", 3));
  Response r;
  EXPECT_EQ(Collect(wire, &r).code(), Status::Code::kProtocolError);
}

TEST(FcgiResponse, ReplyLargerThanLimitIsRefused) {
  std::string wire;
  protocol::AppendRecord(&wire, RecordType::kStdout, 1, std::string(2000, 'x'));
  Response r;
  EXPECT_EQ(Collect(wire, &r, 1000).code(), Status::Code::kTooLarge);
}

TEST(FcgiResponse, WrongRequestIdIsAProtocolError) {
  std::string wire;
  protocol::AppendRecord(&wire, RecordType::kStdout, 2, "Content-type: x\r\n\r\n");
  Response r;
  EXPECT_EQ(Collect(wire, &r).code(), Status::Code::kProtocolError);
}

TEST(FcgiCgi, OutputWithoutHeaderBlockIsAProtocolError) {
  Response r;
  EXPECT_EQ(ParseCgiOutput("PASS", &r).code(), Status::Code::kProtocolError);
  EXPECT_EQ(ParseCgiOutput("", &r).code(), Status::Code::kProtocolError);
  EXPECT_EQ(ParseCgiOutput("no colon here\n\nPASS", &r).code(), Status::Code::kProtocolError);
}

TEST(FcgiCgi, MalformedStatusIsAProtocolError) {
  Response r;
  EXPECT_FALSE(ParseCgiOutput("Status: abc\r\n\r\n", &r).ok());
  EXPECT_FALSE(ParseCgiOutput("Status: 42\r\n\r\n", &r).ok());
}

TEST(FcgiCgi, BodyKeepsItsBytesAfterHeaders) {
  Response r;
  ASSERT_TRUE(ParseCgiOutput("X-A:  spaced  \r\n\r\n\r\n  SAVED\r\n", &r).ok());
  EXPECT_EQ(r.Header("X-A"), "spaced");
  EXPECT_EQ(r.body, "\r\n  SAVED\r\n");
}

TEST(FcgiSpool, SpillsPastThresholdAndReadsBackExactly) {
  Spool spool("/tmp", 100);
  std::string expected;
  for (int i = 0; i < 5000; ++i) {
    std::string piece = std::to_string(i) + ",";
    expected += piece;
    ASSERT_TRUE(spool.Append(piece).ok());
  }
  EXPECT_TRUE(spool.spilled());
  EXPECT_EQ(spool.size(), expected.size());
  std::string back;
  char buf[777];
  uint64_t offset = 0;
  for (;;) {
    size_t got = 0;
    ASSERT_TRUE(spool.ReadAt(offset, buf, sizeof buf, &got).ok());
    if (got == 0) break;
    back.append(buf, got);
    offset += got;
  }
  EXPECT_EQ(back, expected);
}

TEST(FcgiSpool, SmallBodyStaysInMemory) {
  Spool spool("/nonexistent-dir", 1024);
  ASSERT_TRUE(spool.Append("small").ok());
  EXPECT_FALSE(spool.spilled());
}

TEST(FcgiSpool, UnwritableDirectoryFailsClearly) {
  Spool spool("/nonexistent-dir", 4);
  Status s = spool.Append("more than four");
  EXPECT_EQ(s.code(), Status::Code::kIoError);
  EXPECT_NE(s.message().find("/nonexistent-dir"), std::string::npos);
}

}  // namespace
}  // namespace fcgi
