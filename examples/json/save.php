<?php
/*
 * fcgi-milter example: a save script that answers in JSON.
 *
 * POST fields: remote_ip, subject, tls_on, helo, mail_from, rcpt_to_0..N-1 (also rcpt_to[]),
 * rcpt_count, queue_id, client_name, auth_login, tls_version, tls_cipher, message_size,
 * daemon_name, body (the raw message). See README.md, "The script contract".
 *
 * What it does: stores the message in one Maildir per recipient (FCGI_MILTER_MAILDIR/<address>),
 * refuses recipients whose mailbox is over its quota (here: a file "<address>.full" in the
 * Maildir root; those recipients are removed from the message, the others still get it), and
 * adds an "X-Fcgi-Milter-Stored" header to the message the MTA passes on.
 * It answers only after every write succeeded; any failure tempfails the whole message.
 */
header('Content-Type: application/json');

function reply(array $answer): never
{
    echo json_encode($answer, JSON_UNESCAPED_SLASHES), "\n";
    exit;
}

if ($_POST === [] && (int)($_SERVER['CONTENT_LENGTH'] ?? 0) > 0) {
    error_log('save.php: POST larger than post_max_size; $_POST is empty');
    reply(['action' => 'tempfail', 'smtp_code' => 452, 'enhanced_code' => '4.3.1',
           'text' => 'Message too large for the save script (raise post_max_size)']);
}
$body = $_POST['body'] ?? null;
$rcpts = $_POST['rcpt_to'] ?? [];
if (!is_string($body) || !is_array($rcpts) || count($rcpts) !== (int)($_POST['rcpt_count'] ?? -1)) {
    reply(['action' => 'tempfail', 'text' => 'Incomplete request']);
}

$root = $_SERVER['FCGI_MILTER_MAILDIR'] ?? getenv('FCGI_MILTER_MAILDIR') ?: '/var/lib/fcgi-milter/Maildir';
$queueId = preg_replace('/[^A-Za-z0-9]/', '', $_POST['queue_id'] ?? '') ?: bin2hex(random_bytes(6));
$refused = [];
$stored = 0;
foreach ($rcpts as $rcpt) {
    $box = strtolower(preg_replace('/[^A-Za-z0-9@._+-]/', '_', $rcpt));
    if (file_exists("$root/$box.full")) {
        $refused[] = $rcpt;
        continue;
    }
    foreach (['tmp', 'new', 'cur'] as $sub) {
        if (!is_dir("$root/$box/$sub") && !@mkdir("$root/$box/$sub", 0700, true)) {
            error_log("save.php: cannot create $root/$box/$sub");
            reply(['action' => 'tempfail', 'text' => 'Could not store message']);
        }
    }
    $name = sprintf('%d.M%dP%dQ%s.%s', time(), (int)(microtime(true) * 1e6) % 1000000, getmypid(),
                    $queueId, gethostname());
    if (@file_put_contents("$root/$box/tmp/$name", $body) !== strlen($body)
        || !@rename("$root/$box/tmp/$name", "$root/$box/new/$name")) {
        error_log("save.php: cannot write $root/$box/new/$name");
        reply(['action' => 'tempfail', 'text' => 'Could not store message']);
    }
    $stored++;
}

if ($stored === 0) {
    reply(['action' => 'reject', 'smtp_code' => 552, 'enhanced_code' => '5.2.2',
           'text' => 'Mailbox full']);
}
reply([
    'action' => 'accept',
    'add_headers' => [['name' => 'X-Fcgi-Milter-Stored', 'value' => "$stored mailbox(es), queue id $queueId"]],
    'reject_recipients' => $refused,
]);
