<?php
/*
 * fcgi-milter example: the SAVE script.
 *
 * When a message has been received completely, fcgi-milter POSTs it to this script as an
 * ordinary form (application/x-www-form-urlencoded), so everything is in $_POST:
 *
 *   body                 the whole raw message: header lines, a blank line, then the body text
 *   subject              the Subject header, decoded to UTF-8 ("" if none)
 *   mail_from            the envelope sender ("" for bounces)
 *   rcpt_to_0 .. rcpt_to_{N-1}   the accepted recipients, N = rcpt_count
 *   rcpt_count           how many rcpt_to_* fields there are
 *   queue_id             the mail server's ID for this transaction (for your logs). It does not
 *                        identify a message: when a save is answered too late and the sender
 *                        retries, the retry is a new transaction with a new queue id
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

// PHP drops the whole form when the request is larger than post_max_size (default 8M; URL
// encoding can make a message up to 3 times larger). $_POST is then empty even though data came.
// Printing SAVED here would throw the message away: ask the sender to retry, and log it loudly.
if ($_POST === [] && (int)($_SERVER['CONTENT_LENGTH'] ?? 0) > 0) {
    error_log('fcgi-milter save.php: request of ' . $_SERVER['CONTENT_LENGTH'] . ' bytes exceeds '
        . 'post_max_size=' . ini_get('post_max_size') . '; raise it, or lower max_message_size');
    echo "TEMPFAIL 452 4.3.1 Message too large for the save script (raise post_max_size)\n";
    exit;
}
if (!isset($_POST['body']) || !is_string($_POST['body'])) {
    tempfail('no body field in the request; was it sent by fcgi-milter?');
}

// PHP also silently drops form fields beyond max_input_vars (default 1000), which a message
// with very many recipients can reach. Check that every announced recipient arrived.
$rcptCount = (int)($_POST['rcpt_count'] ?? 0);
for ($i = 0; $i < $rcptCount; $i++) {
    if (!isset($_POST["rcpt_to_$i"])) {
        tempfail("rcpt_to_$i missing of $rcptCount recipients; raise max_input_vars");
    }
}

$body = $_POST['body'];
$mailFrom = (string)($_POST['mail_from'] ?? '');
$queueId = (string)($_POST['queue_id'] ?? '');

$maildir = $_SERVER['FCGI_MILTER_MAILDIR'] ?? getenv('FCGI_MILTER_MAILDIR');
if (!is_string($maildir) || $maildir === '') {
    $maildir = '/var/lib/fcgi-milter/Maildir';
}
foreach (['tmp', 'new', 'cur'] as $sub) {
    $dir = "$maildir/$sub";
    // Another request may create it at the same moment: re-check before calling it a failure.
    if (!is_dir($dir) && !@mkdir($dir, 0700, true) && !is_dir($dir)) {
        tempfail("cannot create $dir: " . lastError());
    }
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

// Keep the line ending the body uses (LF by default, CRLF if fcgi-milter is set to send it).
$firstNewline = strpos($body, "\n");
$eol = ($firstNewline !== false && $firstNewline > 0 && $body[$firstNewline - 1] === "\r")
    ? "\r\n" : "\n";
// The envelope sender is the one thing Maildir readers cannot find in the message itself.
// Control characters are removed so that it cannot add header lines of its own.
$returnPath = preg_replace('/[\x00-\x1f\x7f]/', '', $mailFrom);
$message = "Return-Path: <$returnPath>$eol" . $body;

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
$written = fwrite($file, $message);
$ok = $written === strlen($message)
    && fflush($file)       // PHP's buffer -> the kernel
    && fsync($file);       // the kernel -> the disk, so a power cut cannot lose an accepted mail
$closed = fclose($file);
if (!$ok || !$closed) {
    $why = lastError();
    @unlink($tmpPath);
    tempfail("cannot write $tmpPath (wrote " . var_export($written, true) . ' of '
        . strlen($message) . " bytes): $why");
}
if (!@rename($tmpPath, $newPath)) {
    $why = lastError();
    @unlink($tmpPath);
    tempfail("cannot move $tmpPath to $newPath: $why");
}

// Only now is the message safely stored.
echo "SAVED\n";
