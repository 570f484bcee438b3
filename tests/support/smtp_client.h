// SmtpClient: a blocking SMTP client for tests, talking to 127.0.0.1:<port> with a deadline per
// call, plus SendMail for the whole envelope-and-DATA dance. Thread-safety: not thread-safe; one
// SmtpClient per thread (use several for concurrent sessions).
#pragma once

#include <chrono>
#include <ostream>
#include <string>
#include <vector>

namespace testing_support {

class SmtpClient {
 public:
  struct Reply {
    // The SMTP code; 0 if no reply was read (connect failed, timeout, connection closed): text says
    // why.
    int code = 0;
    // Every line of the reply with its code, joined by "\n" (no CR): "250-mx...\n250 8BITMIME".
    std::string text;
    bool ok() const { return code >= 200 && code < 400; }
  };

  explicit SmtpClient(std::chrono::milliseconds timeout = std::chrono::seconds(60));
  ~SmtpClient();
  SmtpClient(const SmtpClient&) = delete;
  SmtpClient& operator=(const SmtpClient&) = delete;

  // Connects to host:port and reads the banner.
  Reply Connect(int port, const std::string& host = "127.0.0.1");
  // Sends line + CRLF and reads the (possibly multi-line) reply.
  Reply Command(const std::string& line);
  // DATA; on 354 sends the message (bare LF -> CRLF, dot-stuffed, final CRLF added if missing) and
  // the terminating ".", then reads the reply. A non-354 answer to DATA is returned as is.
  Reply SendData(const std::string& message);
  // QUIT, then closes.
  Reply Quit();
  void Close();
  bool connected() const { return fd_ >= 0; }

  // Deadline for each later call (connect, one reply, one whole message write).
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

  // The wire form SendData writes for message (exposed for tests of this client).
  static std::string EncodeData(const std::string& message);

 private:
  bool SendAll(const std::string& data, std::string* error);
  Reply ReadReply();

  std::chrono::milliseconds timeout_;
  int fd_ = -1;
  std::string buffer_;  // bytes read past the last reply
};

std::ostream& operator<<(std::ostream& out, const SmtpClient::Reply& reply);

struct MailResult {
  SmtpClient::Reply banner;
  SmtpClient::Reply ehlo;
  SmtpClient::Reply mail_from;
  std::vector<SmtpClient::Reply> rcpts;  // one per recipient tried
  SmtpClient::Reply
      data;  // code 0 if DATA was skipped (no recipient accepted, or an earlier failure)
  // The message was accepted for delivery (250 after the final dot).
  bool accepted() const { return data.code == 250; }
};

std::ostream& operator<<(std::ostream& out, const MailResult& result);

// A whole session: banner, EHLO helo, MAIL FROM, one RCPT TO per recipient, DATA if at least one
// recipient was accepted, QUIT. Addresses are sent inside <> unless they already start with '<'
// (so "" is the null sender and "<a&b@x.test> NOTIFY=NEVER" passes verbatim).
MailResult SendMail(int port, const std::string& from, const std::vector<std::string>& rcpts,
                    const std::string& message, const std::string& helo = "client.example.test",
                    std::chrono::milliseconds timeout = std::chrono::seconds(60));

// A small RFC 5322 message: From, To, Subject, Date, Message-ID headers and the body (LF endings).
std::string MakeMessage(const std::string& from, const std::string& to, const std::string& subject,
                        const std::string& body);

}  // namespace testing_support
