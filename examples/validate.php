<?php
/*
 * fcgi-milter example: the VALIDATE script.
 *
 * The mail server (Postfix or Sendmail) asks fcgi-milter about every recipient of every incoming
 * message while the sender is still connected ("RCPT TO:<someone@example.test>"). fcgi-milter
 * turns each of those questions into a GET request to this script, the way a web server would:
 *
 *   $_GET['rcpt_to']    the recipient address, exactly as the sender gave it, without < >
 *   $_GET['mail_from']  the envelope sender ("" for bounces)
 *   $_GET['remote_ip']  IP address of the sending mail server (also in $_SERVER['REMOTE_ADDR'])
 *   $_GET['helo']       the name the sending server introduced itself with
 *
 * What the script prints decides the fate of that one recipient:
 *
 *   PASS                                   accept the recipient
 *   REJECT 550 5.1.1 <text>                refuse it for good (the sender gets a bounce)
 *   TEMPFAIL 451 4.3.0 <text>              "try again later" (the sender keeps the mail and retries)
 *
 * Anything else (an error page, an empty reply, a PHP fatal error) counts as a refusal, and a
 * crash or timeout as a temporary failure: nothing is lost, the sender retries later.
 *
 * This example accepts the addresses and domains listed in a plain text file, one entry a line:
 *
 *   user@example.test      exactly this address
 *   @example.test          any address at this domain
 *   # text                 a comment (only as the first thing on a line: '#' is legal in addresses)
 *
 * Comparison ignores upper/lower case in the whole address. Strictly, the part before the '@' may
 * be case-sensitive (RFC 5321), but practically every mail system treats it as case-insensitive,
 * and a sender who types "John@" instead of "john@" expects delivery.
 *
 * The file is read on every request: keep it small (this is an example), or replace the lookup
 * with a database query. The file's path comes from FCGI_MILTER_RECIPIENTS (set it in the php-fpm
 * pool with `env[FCGI_MILTER_RECIPIENTS] = /etc/fcgi-milter/recipients.txt`), otherwise
 * recipients.txt next to this script is used.
 *
 * Remember to accept postmaster@ for each of your domains: RFC 5321 requires it.
 */

declare(strict_types=1);

header('Content-Type: text/plain; charset=utf-8');

/** Prints one reply line and ends the request. */
function reply(string $line): never
{
    echo $line, "\n";
    exit;
}

/** The address as it may appear in an SMTP reply: no control characters, bounded length. */
function printable(string $address): string
{
    return substr(preg_replace('/[\x00-\x1f\x7f]/', '?', $address), 0, 256);
}

$recipient = (string)($_GET['rcpt_to'] ?? '');
if ($recipient === '') {
    // Only a request that did not come from fcgi-milter can lack rcpt_to.
    reply('REJECT 501 5.1.3 Bad recipient address syntax');
}

$listFile = $_SERVER['FCGI_MILTER_RECIPIENTS'] ?? getenv('FCGI_MILTER_RECIPIENTS');
if (!is_string($listFile) || $listFile === '') {
    $listFile = __DIR__ . '/recipients.txt';
}

// @ silences PHP's own warning; we log a clearer one ourselves.
$lines = @file($listFile, FILE_IGNORE_NEW_LINES);
if ($lines === false) {
    $why = error_get_last()['message'] ?? 'unknown error';
    error_log("fcgi-milter validate.php: cannot read recipient list $listFile: $why");
    // Temporary: a missing list is our problem, not the sender's. The sender will retry.
    reply('TEMPFAIL 451 4.3.0 Recipient list unavailable');
}

$allowedAddresses = [];
$allowedDomains = [];
foreach ($lines as $line) {
    $entry = strtolower(trim($line));
    if ($entry === '' || $entry[0] === '#') {
        continue;
    }
    if ($entry[0] === '@') {
        $allowedDomains[substr($entry, 1)] = true;
    } else {
        $allowedAddresses[$entry] = true;
    }
}

$address = strtolower($recipient);
// The domain is what follows the last '@' ("a@b"@example.test has domain example.test).
$at = strrpos($address, '@');
$domain = $at === false ? '' : substr($address, $at + 1);

if (isset($allowedAddresses[$address]) || ($domain !== '' && isset($allowedDomains[$domain]))) {
    reply('PASS');
}

reply('REJECT 550 5.1.1 <' . printable($recipient) . '>: Recipient address rejected: User unknown');
