<?php
/*
 * fcgi-milter example: the SAVE script. It works with both of the daemon's save modes.
 *
 * save_mode "form" (the default): the message and its envelope arrive as an ordinary form
 * (application/x-www-form-urlencoded), everything in $_POST. save_mode "raw": the request body
 * is the message itself (Content-Type: message/rfc822, read from php://input in chunks, so any
 * size fits in little memory and post_max_size does not matter) and the envelope is in $_GET.
 * The fields (raw mode: all but body, and rcpt_to only as the array rcpt_to[]):
 *
 *   body                 the whole raw message: header lines, a blank line, then the body text
 *   subject              the Subject header, decoded to UTF-8 ("" if none)
 *   mail_from            the envelope sender ("" for bounces)
 *   rcpt_to_0 .. rcpt_to_{N-1}   the accepted recipients, N = rcpt_count (also as rcpt_to[])
 *   rcpt_count           how many recipients there are
 *   idempotency_key      64 hex digits, the same when the sender retries this message to these
 *                        recipients (see below)
 *   queue_id             the mail server's ID for this transaction (for your logs). It does not
 *                        identify a message: a sender's retry is a new transaction with a new one
 *   remote_ip            IP address of the sending mail server
 *   helo                 the name the sending server introduced itself with
 *   tls_on               "true" or "false": whether the sender used TLS
 *
 * What the script prints decides the fate of the whole message:
 *
 *   SAVED                                  we have it: the sender is told "250 OK"
 *   TEMPFAIL 451 4.3.0 <text>              "try again later": the sender keeps it and retries
 *   REJECT 554 5.7.1 <text>                refuse it for good (the sender gets a bounce)
 *
 * Print SAVED only once the message is really stored. Anything else, or a PHP crash, makes the
 * sender keep the message and retry, so a failing script never loses mail.
 *
 * Each message is stored once. When a save stored the message but its answer came too late
 * (save_timeout, a worker killed after the write), the sender retries and the same message comes
 * again, with the same idempotency_key. This script claims each key with link(), which is atomic:
 * of two deliveries of one key, even at the same moment, one stores and the other only answers
 * SAVED. The claims are hard links in <Maildir>/fcgi-milter-keys/ (not a Maildir folder, readers
 * ignore it); delete ones older than a week at will (`find … -mtime +7 -delete`), senders stop
 * retrying after five days.
 *
 * This example stores each message as a file in a Maildir (the format Dovecot, Courier and mutt
 * read): written to tmp/, flushed to disk, then moved into new/. The rename is atomic, so a
 * reader never sees half a message. The Maildir comes from FCGI_MILTER_MAILDIR (set it in the
 * php-fpm pool: `env[FCGI_MILTER_MAILDIR] = /srv/mail/Maildir`), otherwise
 * /var/lib/fcgi-milter/Maildir. The pool's user must be allowed to write there (the package's
 * pool runs as fcgi-milter-php, which owns /var/lib/fcgi-milter/Maildir).
 */

declare(strict_types=1);

header('Content-Type: text/plain; charset=utf-8');

// If fcgi-milter gives up waiting (save_timeout), keep going anyway: a half-finished write would
// leave litter in tmp/. A finished one is stored while the sender was told to retry, so the
// retry arrives as a second copy (with a new queue id: nothing here tells the two apart).
ignore_user_abort(true);

/** Logs why, tells the sender to retry later, and ends the request. */
function tempfail(string $why): never
{
    error_log("fcgi-milter save.php: $why");
    echo "TEMPFAIL 451 4.3.0 Could not store message\n";
    exit;
}

/** The last PHP warning, for the log ("fopen(...): Permission denied"). */
function lastError(): string
{
    return error_get_last()['message'] ?? 'unknown error';
}

$raw = stripos((string)($_SERVER['CONTENT_TYPE'] ?? ''), 'message/rfc822') === 0;
$fields = $raw ? $_GET : $_POST;

if (!$raw) {
    // PHP drops the whole form when the request is larger than post_max_size (default 8M; URL
    // encoding can make a message up to 3 times larger). $_POST is then empty even though data
    // came. Printing SAVED here would throw the message away: ask the sender to retry, and log it
    // loudly. (save_mode "raw" has no such limit.)
    if ($_POST === [] && (int)($_SERVER['CONTENT_LENGTH'] ?? 0) > 0) {
        error_log('fcgi-milter save.php: request of ' . $_SERVER['CONTENT_LENGTH'] . ' bytes exceeds '
            . 'post_max_size=' . ini_get('post_max_size') . '; raise it, lower max_message_size, '
            . 'or use save_mode "raw"');
        echo "TEMPFAIL 452 4.3.1 Message too large for the save script (raise post_max_size)\n";
        exit;
    }
    if (!isset($_POST['body']) || !is_string($_POST['body'])) {
        tempfail('no body field in the request; was it sent by fcgi-milter?');
    }
}

// PHP also silently drops variables beyond max_input_vars (default 1000). fcgi-milter never
// sends more than its php_max_input_vars allows, but check that every recipient arrived.
$rcpts = $fields['rcpt_to'] ?? [];
if (!is_array($rcpts) || count($rcpts) !== (int)($fields['rcpt_count'] ?? -1)) {
    tempfail('recipients missing of ' . ($fields['rcpt_count'] ?? '?') . '; raise max_input_vars '
        . 'together with php_max_input_vars');
}

$mailFrom = (string)($fields['mail_from'] ?? '');
$queueId = (string)($fields['queue_id'] ?? '');
$key = (string)($fields['idempotency_key'] ?? '');
if (!preg_match('/^[0-9a-f]{64}$/D', $key)) {
    $key = '';  // an older fcgi-milter: every delivery is stored
}

$maildir = $_SERVER['FCGI_MILTER_MAILDIR'] ?? getenv('FCGI_MILTER_MAILDIR');
if (!is_string($maildir) || $maildir === '') {
    $maildir = '/var/lib/fcgi-milter/Maildir';
}
foreach (['tmp', 'new', 'cur', 'fcgi-milter-keys'] as $sub) {
    $dir = "$maildir/$sub";
    // Another request may create it at the same moment: re-check before calling it a failure.
    if (!is_dir($dir) && !@mkdir($dir, 0700, true) && !is_dir($dir)) {
        tempfail("cannot create $dir: " . lastError());
    }
}
$claim = $key === '' ? '' : "$maildir/fcgi-milter-keys/$key";
if ($claim !== '' && alreadyStored($claim)) {
    // A retry of a message we have: say so, store nothing.
    error_log("fcgi-milter save.php: $key already stored (queue id $queueId): not stored again");
    echo "SAVED\n";
    exit;
}

// Maildir file name: time.M<microseconds>P<pid>Q<queue id>.<host>, unique across processes and
// hosts. Characters that would break the name are replaced; Maildir readers don't parse it.
[$usec, $sec] = explode(' ', microtime());
$unique = preg_replace('/[^A-Za-z0-9]/', '', $queueId);
if ($unique === '') {
    $unique = bin2hex(random_bytes(8));
}
$host = str_replace(['/', ':'], ['\057', '\072'], gethostname() ?: 'localhost');
$name = sprintf('%d.M%dP%dQ%s.%s', (int)$sec, (int)((float)$usec * 1000000), getmypid(), $unique,
    $host);

$tmpPath = "$maildir/tmp/$name";
$newPath = "$maildir/new/$name";

// 'x' = create, fail if the name exists: never overwrite another message.
$file = @fopen($tmpPath, 'xb');
if ($file === false) {
    tempfail("cannot create $tmpPath: " . lastError());
}
// Mail is private: readable by the pool's user only, whatever the umask.
if (!@chmod($tmpPath, 0600)) {
    $why = lastError();
    fclose($file);
    @unlink($tmpPath);
    tempfail("cannot chmod $tmpPath: $why");
}

// The envelope sender is the one thing Maildir readers cannot find in the message itself.
// Control characters are removed so that it cannot add header lines of its own. The line ending
// is the one the message uses (LF by default, CRLF if fcgi-milter is set to send it).
$returnPath = 'Return-Path: <' . preg_replace('/[\x00-\x1f\x7f]/', '', $mailFrom) . '>';
$written = 0;
$expected = 0;
$ok = true;
if ($raw) {
    // Copy php://input in 64 KiB chunks: memory stays small whatever the message's size.
    $in = fopen('php://input', 'rb');
    $received = 0;
    $first = true;
    while ($ok && $in !== false && !feof($in)) {
        $chunk = fread($in, 65536);
        if ($chunk === false) {
            $ok = false;
            break;
        }
        $received += strlen($chunk);
        if ($first && $chunk !== '') {
            $nl = strpos($chunk, "\n");
            $eol = ($nl !== false && $nl > 0 && $chunk[$nl - 1] === "\r") ? "\r\n" : "\n";
            $chunk = $returnPath . $eol . $chunk;
            $first = false;
        }
        $expected += strlen($chunk);
        $n = fwrite($file, $chunk);
        $written += $n === false ? 0 : $n;
        $ok = $n === strlen($chunk);
    }
    // The whole message or nothing: CONTENT_LENGTH is exact.
    $ok = $ok && $in !== false && $received > 0
        && $received === (int)($_SERVER['CONTENT_LENGTH'] ?? -1);
} else {
    $body = $_POST['body'];
    $firstNewline = strpos($body, "\n");
    $eol = ($firstNewline !== false && $firstNewline > 0 && $body[$firstNewline - 1] === "\r")
        ? "\r\n" : "\n";
    $message = $returnPath . $eol . $body;
    $expected = strlen($message);
    $n = fwrite($file, $message);
    $written = $n === false ? 0 : $n;
    $ok = $written === $expected;
}
$ok = $ok
    && fflush($file)       // PHP's buffer -> the kernel
    && fsync($file);       // the kernel -> the disk, so a power cut cannot lose an accepted mail
$closed = fclose($file);
if (!$ok || !$closed) {
    $why = lastError();
    @unlink($tmpPath);
    tempfail("cannot write $tmpPath (wrote $written of $expected bytes): $why");
}

// Claim the key: link() fails if another delivery of this message claimed it first, even one
// running right now. Only the winner moves its file into new/.
if ($claim !== '' && !@link($tmpPath, $claim)) {
    if (alreadyStored($claim)) {
        @unlink($tmpPath);
        error_log("fcgi-milter save.php: $key stored by a concurrent delivery: not stored again");
        echo "SAVED\n";
        exit;
    }
    // A claim whose message is gone (its reader deleted it): this delivery stores it again.
    if (!(@unlink($claim) || !file_exists($claim)) || !@link($tmpPath, $claim)) {
        $why = lastError();
        @unlink($tmpPath);
        tempfail("cannot claim $claim: $why");
    }
}
if (!@rename($tmpPath, $newPath)) {
    $why = lastError();
    @unlink($tmpPath);
    if ($claim !== '') {
        @unlink($claim);
    }
    tempfail("cannot move $tmpPath to $newPath: $why");
}

// Only now is the message safely stored.
echo "SAVED\n";

/**
 * Whether the message claimed under $claim is in the Maildir: the claim is a hard link to the
 * message file, so the file has another name (tmp/ for the instant before its rename, then new/,
 * then cur/ once a mail reader saw it).
 */
function alreadyStored(string $claim): bool
{
    clearstatcache(true, $claim);
    $st = @stat($claim);
    return $st !== false && $st['nlink'] >= 2;
}
