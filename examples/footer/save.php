<?php
/*
 * fcgi-milter example: a save script that stores the message, then has the mail server append a
 * footer to it (JSON reply "replace_body", docs/json-replies.md).
 *
 * Storing works as in ../save.php, shortened: the message as it arrived, preceded by
 * "Return-Path: <sender>", goes to a Maildir (tmp/, fsync, rename into new/); the Maildir comes
 * from FCGI_MILTER_MAILDIR (default /var/lib/fcgi-milter/Maildir). Any failure answers
 * "tempfail": the sender keeps the message and retries. Needs save_mode "form" (the default).
 *
 * The footer (FCGI_MILTER_FOOTER, default below) is added only where appending text is safe:
 *   - a plain-text message: no Content-Type, or text/plain, and no base64 or quoted-printable
 *     Content-Transfer-Encoding (appending to encoded text would corrupt it);
 *   - a body that is valid UTF-8 (or ASCII): JSON carries text, not arbitrary bytes;
 *   - a reply that fits in the daemon's max_reply_size (FCGI_MILTER_MAX_REPLY, default 1 MiB, the
 *     daemon's default): a larger one would be a failed request (451) after the message was
 *     stored. Raise both to add footers to larger messages.
 * Anything else, multipart (MIME) messages included, goes on untouched: adding a footer to those
 * means adding a MIME part, which this example does not attempt.
 */

declare(strict_types=1);

function reply(array $r): never
{
    header('Content-Type: application/json');
    echo json_encode($r, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
    exit;
}

function tempfail(string $why): never
{
    error_log("fcgi-milter footer/save.php: $why");
    reply(['action' => 'tempfail', 'text' => 'Could not store message']);
}

/** Stores $message in the Maildir $maildir, or answers tempfail. */
function store(string $maildir, string $message): void
{
    foreach (['tmp', 'new', 'cur'] as $sub) {
        if (!is_dir("$maildir/$sub") && !@mkdir("$maildir/$sub", 0700, true) && !is_dir("$maildir/$sub")) {
            tempfail("cannot create $maildir/$sub");
        }
    }
    $name = sprintf('%.6f.P%dR%s.%s', microtime(true), getmypid(), bin2hex(random_bytes(4)),
        str_replace(['/', ':'], ['\057', '\072'], gethostname() ?: 'localhost'));
    $file = @fopen("$maildir/tmp/$name", 'xb');
    $ok = $file !== false && fwrite($file, $message) === strlen($message) && fflush($file)
        && fsync($file);
    if ($file !== false) {
        $ok = fclose($file) && $ok;
    }
    if (!$ok || !@rename("$maildir/tmp/$name", "$maildir/new/$name")) {
        @unlink("$maildir/tmp/$name");
        tempfail("cannot write $maildir/tmp/$name");
    }
}

$message = $_POST['body'] ?? null;
if (!is_string($message)) {
    tempfail('no body field in the request (save_mode must be "form")');
}
$maildir = getenv('FCGI_MILTER_MAILDIR') ?: '/var/lib/fcgi-milter/Maildir';
$from = preg_replace('/[\x00-\x1f\x7f]/', '', (string)($_POST['mail_from'] ?? ''));
$eol = str_contains($message, "\r\n") ? "\r\n" : "\n";
store($maildir, "Return-Path: <$from>$eol" . $message);

// The header section ends at the first empty line.
$split = strpos($message, "$eol$eol");
if ($split === false) {
    reply(['action' => 'accept']);  // no body at all: nothing to append to
}
$headers = substr($message, 0, $split + strlen($eol));
$body = substr($message, $split + 2 * strlen($eol));
// Unfolded header values, by lower-case name.
preg_match_all('/^([^:\s]+):(.*(?:\r?\n[ \t].*)*)/m', $headers, $m, PREG_SET_ORDER);
$h = [];
foreach ($m as [, $name, $value]) {
    $h[strtolower($name)] = strtolower(trim(preg_replace('/\r?\n[ \t]/', ' ', $value)));
}
$type = $h['content-type'] ?? 'text/plain';
$cte = $h['content-transfer-encoding'] ?? '7bit';
if (!str_starts_with($type, 'text/plain') || !in_array($cte, ['7bit', '8bit'], true)
    || preg_match('//u', $body) !== 1) {
    reply(['action' => 'accept']);
}

$footer = getenv('FCGI_MILTER_FOOTER') ?: 'This message was received by example.test.';
if ($body !== '' && !str_ends_with($body, "\n")) {
    $body .= $eol;
}
$r = ['action' => 'accept', 'replace_body' => $body . "$eol-- $eol" . $footer . $eol];
$json = json_encode($r, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
$max = (int)(getenv('FCGI_MILTER_MAX_REPLY') ?: 1048576);
if ($json === false || strlen($json) > $max) {
    reply(['action' => 'accept']);  // too large for max_reply_size: goes on without a footer
}
reply($r);
