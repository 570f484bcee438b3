#include "fcgi/protocol.h"

namespace fcgi::protocol {

void EncodeHeader(const RecordHeader& header, uint8_t out[kHeaderSize]) {
  out[0] = header.version;
  out[1] = static_cast<uint8_t>(header.type);
  out[2] = static_cast<uint8_t>(header.request_id >> 8);
  out[3] = static_cast<uint8_t>(header.request_id & 0xff);
  out[4] = static_cast<uint8_t>(header.content_length >> 8);
  out[5] = static_cast<uint8_t>(header.content_length & 0xff);
  out[6] = header.padding_length;
  out[7] = 0;
}

RecordHeader DecodeHeader(const uint8_t in[kHeaderSize]) {
  RecordHeader h;
  h.version = in[0];
  h.type = static_cast<RecordType>(in[1]);
  h.request_id = static_cast<uint16_t>((in[2] << 8) | in[3]);
  h.content_length = static_cast<uint16_t>((in[4] << 8) | in[5]);
  h.padding_length = in[6];
  return h;
}

void AppendRecord(std::string* out, RecordType type, uint16_t request_id,
                  std::string_view content) {
  RecordHeader h;
  h.type = type;
  h.request_id = request_id;
  h.content_length = static_cast<uint16_t>(content.size());
  h.padding_length = static_cast<uint8_t>((8 - content.size() % 8) % 8);
  uint8_t raw[kHeaderSize];
  EncodeHeader(h, raw);
  out->append(reinterpret_cast<const char*>(raw), kHeaderSize);
  out->append(content);
  out->append(h.padding_length, '\0');
}

void AppendBeginRequest(std::string* out, uint16_t request_id, Role role, bool keep_conn) {
  const auto r = static_cast<uint16_t>(role);
  const char body[8] = {static_cast<char>(r >> 8),
                        static_cast<char>(r & 0xff),
                        static_cast<char>(keep_conn ? kFlagKeepConn : 0),
                        0,
                        0,
                        0,
                        0,
                        0};
  AppendRecord(out, RecordType::kBeginRequest, request_id, std::string_view(body, sizeof body));
}

namespace {

void AppendLength(std::string* out, size_t n) {
  if (n < 128) {
    out->push_back(static_cast<char>(n));
    return;
  }
  out->push_back(static_cast<char>(((n >> 24) & 0x7f) | 0x80));
  out->push_back(static_cast<char>((n >> 16) & 0xff));
  out->push_back(static_cast<char>((n >> 8) & 0xff));
  out->push_back(static_cast<char>(n & 0xff));
}

bool ReadLength(std::string_view in, size_t* pos, size_t* n) {
  if (*pos >= in.size()) return false;
  const auto b0 = static_cast<uint8_t>(in[*pos]);
  if ((b0 & 0x80) == 0) {
    *n = b0;
    *pos += 1;
    return true;
  }
  if (in.size() - *pos < 4) return false;
  *n = (static_cast<size_t>(b0 & 0x7f) << 24) | (static_cast<size_t>(uint8_t(in[*pos + 1])) << 16) |
       (static_cast<size_t>(uint8_t(in[*pos + 2])) << 8) |
       static_cast<size_t>(uint8_t(in[*pos + 3]));
  *pos += 4;
  return true;
}

}  // namespace

void AppendNameValue(std::string* out, std::string_view name, std::string_view value) {
  AppendLength(out, name.size());
  AppendLength(out, value.size());
  out->append(name);
  out->append(value);
}

Status DecodeNameValues(std::string_view in, Params* out) {
  size_t pos = 0;
  while (pos < in.size()) {
    size_t name_len = 0;
    size_t value_len = 0;
    if (!ReadLength(in, &pos, &name_len) || !ReadLength(in, &pos, &value_len)) {
      return Status::ProtocolError("truncated name-value length at byte " + std::to_string(pos));
    }
    if (in.size() - pos < name_len || in.size() - pos - name_len < value_len) {
      return Status::ProtocolError("name-value pair overruns its record at byte " +
                                   std::to_string(pos));
    }
    out->emplace_back(std::string(in.substr(pos, name_len)),
                      std::string(in.substr(pos + name_len, value_len)));
    pos += name_len + value_len;
  }
  return Status::Ok();
}

Status EncodeRequestHead(uint16_t request_id, const Params& params, bool keep_conn,
                         std::string* out) {
  std::string pairs;
  for (const auto& [name, value] : params) AppendNameValue(&pairs, name, value);
  if (pairs.size() > kMaxContentLength) {
    // A request this client cannot encode, not a configured limit (kTooLarge is kept for those).
    return Status::InvalidArgument("FastCGI params are " + std::to_string(pairs.size()) +
                                   " bytes, more than one record (65535) holds");
  }
  AppendBeginRequest(out, request_id, Role::kResponder, keep_conn);
  AppendRecord(out, RecordType::kParams, request_id, pairs);
  AppendRecord(out, RecordType::kParams, request_id, {});
  return Status::Ok();
}

Status DecodeEndRequest(std::string_view content, EndRequestBody* out) {
  if (content.size() < 8) {
    return Status::ProtocolError("END_REQUEST body is " + std::to_string(content.size()) +
                                 " bytes, expected 8");
  }
  const auto* b = reinterpret_cast<const uint8_t*>(content.data());
  out->app_status = (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
  out->protocol_status = static_cast<ProtocolStatus>(b[4]);
  return Status::Ok();
}

void RecordReader::Feed(const char* data, size_t n) {
  if (consumed_ > 0 && consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  } else if (consumed_ > 65536 && consumed_ * 2 > buffer_.size()) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  buffer_.append(data, n);
}

Status RecordReader::Next(std::optional<Record>* out) {
  out->reset();
  const size_t available = buffer_.size() - consumed_;
  if (available < kHeaderSize) return Status::Ok();
  const auto* raw = reinterpret_cast<const uint8_t*>(buffer_.data() + consumed_);
  const RecordHeader h = DecodeHeader(raw);
  if (h.version != kVersion1) {
    return Status::ProtocolError("record with FastCGI version " + std::to_string(h.version) +
                                 ", expected 1 (is this really a FastCGI server?)");
  }
  const size_t total = kHeaderSize + h.content_length + h.padding_length;
  if (available < total) return Status::Ok();
  *out = Record{h.type, h.request_id,
                std::string_view(buffer_.data() + consumed_ + kHeaderSize, h.content_length)};
  consumed_ += total;
  return Status::Ok();
}

}  // namespace fcgi::protocol
