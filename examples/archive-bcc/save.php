<?php
/*
 * fcgi-milter example: a save script that stores the message, then has the mail server send a
 * copy to an archive address (JSON reply "add_recipients", docs/json-replies.md): a BCC, no
 * header names the archive, the other recipients see nothing of it.
 *
 * Storing works as in ../save.php, shortened: the message as it arrived, preceded by
 * "Return-Path: <sender>", goes to a Maildir (tmp/, fsync, rename into new/); the Maildir comes
 * from FCGI_MILTER_MAILDIR (default /var/lib/fcgi-milter/Maildir). Any failure answers
 * "tempfail": the sender keeps the message and retries. Needs save_mode "form" (the default).
 *
 * The archive address comes from FCGI_MILTER_ARCHIVE (php-fpm pool:
 * `env[FCGI_MILTER_ARCHIVE] = archive@example.test`), default ARCHIVE below. To ask for no
 * delivery status notification about the copy, write
 * ['address' => $archive, 'args' => 'NOTIFY=NEVER'] instead: Postfix 3.7 and Sendmail 8.17 both
 * keep such ESMTP arguments (tests/e2e/edits_e2e_test.cc checks it).
 */

declare(strict_types=1);

const ARCHIVE = 'archive@example.test';

function reply(array $r): never
{
    header('Content-Type: application/json');
    echo json_encode($r, JSON_UNESCAPED_SLASHES);
    exit;
}

function tempfail(string $why): never
{
    error_log("fcgi-milter archive-bcc/save.php: $why");
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

$archive = getenv('FCGI_MILTER_ARCHIVE') ?: ARCHIVE;
// Mail to the archive itself: it gets one copy, not two.
$rcpts = $_POST['rcpt_to'] ?? [];
if (is_array($rcpts) && in_array($archive, $rcpts, true)) {
    reply(['action' => 'accept']);
}
reply(['action' => 'accept', 'add_recipients' => [$archive]]);
