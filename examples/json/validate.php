<?php
/*
 * fcgi-milter example: a validate script that answers in JSON.
 *
 * fcgi-milter calls it once per RCPT TO with GET fields rcpt_to, mail_from, remote_ip, helo,
 * client_name, auth_login, tls_on, daemon_name (and queue_id when the MTA has one).
 * A reply with "Content-Type: application/json" follows the JSON schema (docs/json-replies.md).
 *
 * What it does: accepts addresses listed in recipients.txt (same format as the plain example),
 * and tempfails a recipient whose mailbox is locked, i.e. while a file "<address>.lock" exists
 * in the lock directory (FCGI_MILTER_LOCK_DIR, default /tmp/fcgi-milter-locks): a mailbox in
 * maintenance gets "try again later", not a bounce.
 */
header('Content-Type: application/json');

function reply(array $answer): never
{
    echo json_encode($answer, JSON_UNESCAPED_SLASHES), "\n";
    exit;
}

$rcpt = strtolower(trim($_GET['rcpt_to'] ?? ''));
if ($rcpt === '' || !str_contains($rcpt, '@')) {
    reply(['action' => 'reject', 'smtp_code' => 501, 'enhanced_code' => '5.1.3',
           'text' => 'Bad recipient address syntax']);
}

$listFile = $_SERVER['FCGI_MILTER_RECIPIENTS'] ?? getenv('FCGI_MILTER_RECIPIENTS');
if (!$listFile) {
    $listFile = dirname(__DIR__) . '/recipients.txt';
}
$lines = @file($listFile, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES);
if ($lines === false) {
    error_log("validate.php: cannot read recipient list $listFile");
    reply(['action' => 'tempfail', 'text' => 'Recipient list unavailable']);
}
$domain = substr($rcpt, strrpos($rcpt, '@'));
$known = false;
foreach ($lines as $line) {
    $entry = strtolower(trim($line));
    if ($entry === '' || $entry[0] === '#') {
        continue;
    }
    if ($entry === $rcpt || ($entry[0] === '@' && $entry === $domain)) {
        $known = true;
        break;
    }
}
if (!$known) {
    reply(['action' => 'reject', 'smtp_code' => 550, 'enhanced_code' => '5.1.1',
           'text' => "<$rcpt>: Recipient address rejected: User unknown"]);
}

$lockDir = $_SERVER['FCGI_MILTER_LOCK_DIR'] ?? getenv('FCGI_MILTER_LOCK_DIR') ?: '/tmp/fcgi-milter-locks';
if (file_exists("$lockDir/$rcpt.lock")) {
    reply(['action' => 'tempfail', 'smtp_code' => 450, 'enhanced_code' => '4.2.1',
           'text' => "<$rcpt>: Mailbox temporarily locked, try again later"]);
}

reply(['action' => 'accept']);
