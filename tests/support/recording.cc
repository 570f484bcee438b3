#include "tests/support/recording.h"

#include <algorithm>
#include <filesystem>

#include "tests/support/temp_dir.h"

namespace testing_support {

const char* const kRecordingSaveScript = R"php(<?php
$dir = getenv('DUMP_DIR');
$name = sprintf('%020d', hrtime(true));
$fields = $_POST;
unset($fields['body']);
$fields['_server'] = ['REMOTE_ADDR' => $_SERVER['REMOTE_ADDR'],
                      'REQUEST_METHOD' => $_SERVER['REQUEST_METHOD'],
                      'CONTENT_TYPE' => $_SERVER['CONTENT_TYPE'] ?? '',
                      'CONTENT_LENGTH' => $_SERVER['CONTENT_LENGTH'] ?? '',
                      'SERVER_SOFTWARE' => $_SERVER['SERVER_SOFTWARE'] ?? ''];
file_put_contents("$dir/$name.body", $_POST['body'] ?? '');
file_put_contents("$dir/$name.json", json_encode($fields, JSON_INVALID_UTF8_SUBSTITUTE));
echo "SAVED\n";
)php";

const char* const kRecordingRawSaveScript = R"php(<?php
$dir = getenv('DUMP_DIR');
$name = sprintf('%020d', hrtime(true));
$fields = $_GET;
$fields['_server'] = ['REMOTE_ADDR' => $_SERVER['REMOTE_ADDR'],
                      'REQUEST_METHOD' => $_SERVER['REQUEST_METHOD'],
                      'CONTENT_TYPE' => $_SERVER['CONTENT_TYPE'] ?? '',
                      'CONTENT_LENGTH' => $_SERVER['CONTENT_LENGTH'] ?? '',
                      'QUERY_STRING_LENGTH' => strlen($_SERVER['QUERY_STRING'] ?? ''),
                      'POST_FIELDS' => count($_POST),
                      'SERVER_SOFTWARE' => $_SERVER['SERVER_SOFTWARE'] ?? ''];
$in = fopen('php://input', 'rb');
$out = fopen("$dir/$name.body", 'wb');
while (!feof($in)) {
  $chunk = fread($in, 65536);
  if ($chunk === false) { echo "TEMPFAIL read failed\n"; exit; }
  fwrite($out, $chunk);
}
fclose($out);
$fields['_server']['PEAK_MEMORY'] = memory_get_peak_usage(true);
file_put_contents("$dir/$name.json", json_encode($fields, JSON_INVALID_UTF8_SUBSTITUTE));
echo "SAVED\n";
)php";

std::vector<SavedMessage> ReadSavedMessages(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".json") names.push_back(e.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  std::vector<SavedMessage> out;
  for (const auto& n : names) {
    SavedMessage m;
    m.fields = nlohmann::json::parse(ReadFile(dir + "/" + n + ".json"));
    m.body = ReadFile(dir + "/" + n + ".body");
    out.push_back(std::move(m));
  }
  return out;
}

const char* const kCraftedMessage =
    "From: Sender <sender@client.test>\n"
    "To: user@example.test\n"
    "Subject: =?UTF-8?B?SMOpbGxv?= =?ISO-8859-1?Q?w=F6rld?=\n"
    "Date: Thu, 26 Nov 2026 00:00:00 +0000\n"
    "Message-ID: <crafted-1@client.test>\n"
    "X-Tab:\tvalue after a tab\n"
    "X-Trailing: value with trailing spaces   \n"
    "X-Folded: first part\n"
    "\tsecond part\n"
    "\n"
    "Body line one\n"
    "\n"
    "..a line that started with a dot\n"
    "last line\n";

}  // namespace testing_support
