<?php
/*
 * fcgi-milter example: a save script that answers in JSON.
 *
 * Fields ($_POST in save_mode "form", $_GET in save_mode "raw"): remote_ip, subject, tls_on,
 * helo, mail_from, rcpt_to[] (also rcpt_to_0..N-1 in a form), rcpt_count, queue_id,
 * client_name, auth_login, tls_version, tls_cipher, message_size, daemon_name, idempotency_key,
 * and in a form body (the raw message); in raw mode the request body is the message. See
 * README.md, "The script contract", and docs/saving.md.
 *
 * What it does: stores the message in one Maildir per recipient (FCGI_MILTER_MAILDIR/<address>),
 * refuses recipients whose mailbox is over its quota (here: a file "<address>.full" in the
 * Maildir root; those recipients are removed from the message, the others still get it), and
 * adds an "X-Fcgi-Milter-Stored" header to the message the MTA passes on.
 * It answers only after every write succeeded; any failure tempfails the whole message.
 * A retry of a message already stored (same idempotency_key: the answer to an earlier delivery
 * came too late) is stored once per mailbox: each mailbox claims the key with link(), atomically.
 */
header('Content-Type: application/json');

function reply(array $answer): never
{
    echo json_encode($answer, JSON_UNESCAPED_SLASHES), "\n";
    exit;
}

$raw = stripos((string)($_SERVER['CONTENT_TYPE'] ?? ''), 'message/rfc822') === 0;
$fields = $raw ? $_GET : $_POST;
if (!$raw && $_POST === [] && (int)($_SERVER['CONTENT_LENGTH'] ?? 0) > 0) {
    error_log('save.php: POST larger than post_max_size; $_POST is empty');
    reply(['action' => 'tempfail', 'smtp_code' => 452, 'enhanced_code' => '4.3.1',
           'text' => 'Message too large for the save script (raise post_max_size)']);
}
// Raw mode: the message is php://input (a small script may read it whole; see ../save.php for
// copying it in chunks).
$body = $raw ? file_get_contents('php://input') : ($_POST['body'] ?? null);
$rcpts = $fields['rcpt_to'] ?? [];
if (!is_string($body) || ($raw && strlen($body) !== (int)($_SERVER['CONTENT_LENGTH'] ?? -1))
    || !is_array($rcpts) || count($rcpts) !== (int)($fields['rcpt_count'] ?? -1)) {
    reply(['action' => 'tempfail', 'text' => 'Incomplete request']);
}
$key = preg_match('/^[0-9a-f]{64}$/D', (string)($fields['idempotency_key'] ?? ''))
    ? $fields['idempotency_key'] : '';

$root = $_SERVER['FCGI_MILTER_MAILDIR'] ?? getenv('FCGI_MILTER_MAILDIR') ?: '/var/lib/fcgi-milter/Maildir';
$queueId = preg_replace('/[^A-Za-z0-9]/', '', $fields['queue_id'] ?? '') ?: bin2hex(random_bytes(6));
$refused = [];
$stored = 0;
foreach ($rcpts as $rcpt) {
    $box = strtolower(preg_replace('/[^A-Za-z0-9@._+-]/', '_', $rcpt));
    if (file_exists("$root/$box.full")) {
        $refused[] = $rcpt;
        continue;
    }
    foreach (['tmp', 'new', 'cur', 'fcgi-milter-keys'] as $sub) {
        if (!is_dir("$root/$box/$sub") && !@mkdir("$root/$box/$sub", 0700, true)) {
            error_log("save.php: cannot create $root/$box/$sub");
            reply(['action' => 'tempfail', 'text' => 'Could not store message']);
        }
    }
    $claim = $key === '' ? '' : "$root/$box/fcgi-milter-keys/$key";
    if ($claim !== '' && stored($claim)) {
        $stored++;  // a retry: this mailbox has it already
        continue;
    }
    $name = sprintf('%d.M%dP%dQ%s.%s', time(), (int)(microtime(true) * 1e6) % 1000000, getmypid(),
                    $queueId, gethostname());
    $tmp = "$root/$box/tmp/$name";
    if (@file_put_contents($tmp, $body) !== strlen($body)) {
        @unlink($tmp);
        error_log("save.php: cannot write $tmp");
        reply(['action' => 'tempfail', 'text' => 'Could not store message']);
    }
    // The claim: link() fails when another delivery of this message got there first.
    if ($claim !== '' && !@link($tmp, $claim)) {
        @unlink($tmp);
        if (stored($claim)) {
            $stored++;
            continue;
        }
        error_log("save.php: cannot claim $claim");
        reply(['action' => 'tempfail', 'text' => 'Could not store message']);
    }
    if (!@rename($tmp, "$root/$box/new/$name")) {
        @unlink($tmp);
        if ($claim !== '') {
            @unlink($claim);
        }
        error_log("save.php: cannot write $root/$box/new/$name");
        reply(['action' => 'tempfail', 'text' => 'Could not store message']);
    }
    $stored++;
}

/** The claim is a hard link to the stored message: two names means it is in the mailbox. */
function stored(string $claim): bool
{
    clearstatcache(true, $claim);
    $st = @stat($claim);
    return $st !== false && $st['nlink'] >= 2;
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
