<?php
// Test script for both stages: records what the request carried as JSON in $DUMP_DIR (set by the
// pool, see tests/support/php_fpm.cc), then answers PASS to a GET (validate) and SAVED to a POST
// (save). Files are named <hrtime>-<random>.json so that sorting by name gives arrival order.
// Bytes that are not UTF-8 are replaced by U+FFFD (json_encode cannot carry them): tests of
// 8-bit content should write their own script.
$server_keys = ['REMOTE_ADDR', 'REQUEST_METHOD', 'CONTENT_TYPE', 'CONTENT_LENGTH', 'SCRIPT_FILENAME',
                'SCRIPT_NAME', 'QUERY_STRING', 'GATEWAY_INTERFACE', 'SERVER_PROTOCOL',
                'SERVER_SOFTWARE'];
$server = [];
foreach ($server_keys as $key) {
    if (isset($_SERVER[$key])) {
        $server[$key] = $_SERVER[$key];
    }
}
// Objects even when empty, so tests can index them by name.
$dump = ['get' => (object)$_GET, 'post' => (object)$_POST, 'server' => (object)$server];
$json = json_encode($dump, JSON_INVALID_UTF8_SUBSTITUTE | JSON_UNESCAPED_SLASHES
                           | JSON_UNESCAPED_UNICODE | JSON_PRETTY_PRINT);
$dir = getenv('DUMP_DIR');
$name = sprintf('%020d-%s', hrtime(true), bin2hex(random_bytes(4)));
$ok = $json !== false && $dir !== false && $dir !== ''
      && file_put_contents("$dir/$name.tmp", $json) === strlen($json)
      && rename("$dir/$name.tmp", "$dir/$name.json");
if (!$ok) {
    // A failed dump must not look like success to the test.
    header('Status: 500 Internal Server Error');
    echo "ERROR: cannot write dump to DUMP_DIR='$dir'";
    exit;
}
echo ($_SERVER['REQUEST_METHOD'] ?? '') === 'POST' ? 'SAVED' : 'PASS';
