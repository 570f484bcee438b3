// Raw message rebuilding and streaming encoder; see raw_message.h.
#include "milter/mail/raw_message.h"

#include <cstring>
#include <utility>

#include "milter/mail/form.h"

namespace mail {
namespace {

// Raw bytes encoded per step, so the buffer never grows past kFlushBytes + 3 * kEncodeStep.
constexpr size_t kEncodeStep = 16 * 1024;

}  // namespace

RawMessageEncoder::RawMessageEncoder(LineEnding ending, Sink sink, BodyEncoding encoding)
    : ending_(ending), encoding_(encoding), sink_(std::move(sink)) {
  buffer_.reserve(kFlushBytes + PercentEncodedMaxSize(kEncodeStep));
}

void RawMessageEncoder::Emit(std::string_view raw) {
  while (!raw.empty() && status_.ok()) {
    const std::string_view step = raw.substr(0, kEncodeStep);
    if (encoding_ == BodyEncoding::kForm) {
      PercentEncodeAppend(step, &buffer_);
    } else {
      buffer_.append(step);
    }
    hash_.Update(step);
    raw_size_ += step.size();
    raw.remove_prefix(step.size());
    FlushIfFull();
  }
}

void RawMessageEncoder::EmitNewline() {
  if (!status_.ok()) return;
  Emit(ending_ == LineEnding::kLf ? std::string_view("\n") : std::string_view("\r\n"));
}

void RawMessageEncoder::EmitWithEndings(std::string_view text) {
  while (!text.empty()) {
    const size_t i = text.find_first_of("\r\n");
    if (i == std::string_view::npos) {
      Emit(text);
      return;
    }
    Emit(text.substr(0, i));
    if (text[i] == '\n') {
      EmitNewline();
      text.remove_prefix(i + 1);
    } else if (i + 1 < text.size() && text[i + 1] == '\n') {
      EmitNewline();
      text.remove_prefix(i + 2);
    } else {
      Emit("\r");  // a lone CR is content, not a line break
      text.remove_prefix(i + 1);
    }
  }
}

void RawMessageEncoder::FlushIfFull() {
  if (buffer_.size() >= kFlushBytes) (void)Flush();  // a failure stays in status_
}

base::Status RawMessageEncoder::Flush() {
  if (status_.ok() && !buffer_.empty()) status_ = sink_(buffer_);
  buffer_.clear();
  return status_;
}

base::Status RawMessageEncoder::AddHeader(std::string_view name, std::string_view value,
                                          bool value_has_leading_space) {
  if (phase_ != Phase::kHeaders) {
    return base::Status::InvalidArgument("header after the end of the header section");
  }
  Emit(name);
  Emit(value_has_leading_space ? std::string_view(":") : std::string_view(": "));
  EmitWithEndings(value);
  EmitNewline();
  return status_;
}

base::Status RawMessageEncoder::EndHeaders() {
  if (phase_ == Phase::kFinished) {
    return base::Status::InvalidArgument("message already finished");
  }
  if (phase_ == Phase::kHeaders) {
    EmitNewline();
    phase_ = Phase::kBody;
  }
  return status_;
}

base::Status RawMessageEncoder::AddBody(std::string_view chunk) {
  if (phase_ == Phase::kFinished) {
    return base::Status::InvalidArgument("body after the end of the message");
  }
  if (phase_ == Phase::kHeaders) (void)EndHeaders();  // a failure stays in status_
  if (chunk.empty()) return status_;

  if (ending_ == LineEnding::kLf) {
    if (pending_cr_) {
      pending_cr_ = false;
      if (chunk.front() == '\n') {
        EmitNewline();
        chunk.remove_prefix(1);
      } else {
        Emit("\r");
      }
    }
    while (!chunk.empty()) {
      const void* cr = std::memchr(chunk.data(), '\r', chunk.size());
      if (cr == nullptr) {
        Emit(chunk);
        break;
      }
      const size_t i = static_cast<size_t>(static_cast<const char*>(cr) - chunk.data());
      Emit(chunk.substr(0, i));
      if (i + 1 == chunk.size()) {
        pending_cr_ = true;  // the LF, if any, comes with the next chunk
        break;
      }
      if (chunk[i + 1] == '\n') {
        EmitNewline();
        chunk.remove_prefix(i + 2);
      } else {
        Emit("\r");
        chunk.remove_prefix(i + 1);
      }
    }
  } else {
    while (!chunk.empty()) {
      const void* lf = std::memchr(chunk.data(), '\n', chunk.size());
      if (lf == nullptr) {
        Emit(chunk);
        last_was_cr_ = chunk.back() == '\r';
        break;
      }
      const size_t i = static_cast<size_t>(static_cast<const char*>(lf) - chunk.data());
      const bool has_cr = i > 0 ? chunk[i - 1] == '\r' : last_was_cr_;
      if (has_cr) {
        Emit(chunk.substr(0, i + 1));
      } else {
        Emit(chunk.substr(0, i));
        EmitNewline();
      }
      last_was_cr_ = false;
      chunk.remove_prefix(i + 1);
    }
  }
  return status_;
}

base::Status RawMessageEncoder::Finish() {
  if (phase_ == Phase::kFinished) return status_;
  if (phase_ == Phase::kHeaders) (void)EndHeaders();  // a failure stays in status_
  if (pending_cr_) {
    pending_cr_ = false;
    Emit("\r");
  }
  phase_ = Phase::kFinished;
  digest_ = hash_.Finish();
  return Flush();
}

}  // namespace mail
