<?php
// A MAIL FROM script: refuses senders on a blocklist before any recipient or body is sent.
//
// Enable it with "fcgi_script_filename_mail": "/usr/share/fcgi-milter/examples/blocklist/mail.php"
// (copy it somewhere of your own to change it). The list is one entry per line: a whole address
// (spam@example.com) or a domain with its @ (@example.com); lines starting with # are comments.
// The file is FCGI_MILTER_BLOCKLIST from the pool's environment, else blocked-senders.txt
// next to this script.
//
// What the daemon sends (GET): stage=mail, mail_from (no angle brackets; "" for the null
// sender), esmtp_args ("SIZE=1234 BODY=8BITMIME"), auth_login, remote_ip, client_name, helo,
// tls_on, daemon_name. It answers like a validate script: PASS, or REJECT/TEMPFAIL with your
// code and text, or JSON.

$list = getenv('FCGI_MILTER_BLOCKLIST') ?: __DIR__ . '/blocked-senders.txt';
$from = strtolower($_GET['mail_from'] ?? '');

// The null sender (bounces) is never refused here: RFC 5321 requires accepting it.
if ($from === '') {
    echo "PASS\n";
    exit;
}

$entries = @file($list, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES);
if ($entries === false) {
    // No list: say "later" rather than let everything through unnoticed.
    echo "TEMPFAIL 451 4.3.0 Sender blocklist unavailable\n";
    exit;
}

$domain = strrchr($from, '@');  // "@example.com"
foreach ($entries as $entry) {
    $entry = strtolower(trim($entry));
    if ($entry === '' || $entry[0] === '#') {
        continue;
    }
    if ($entry === $from || ($entry[0] === '@' && $entry === $domain)) {
        echo "REJECT 550 5.7.1 <$from>: Sender address rejected: blocked\n";
        exit;
    }
}
echo "PASS\n";
