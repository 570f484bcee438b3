#!/usr/bin/env bash
# Container test (ctest label "container"): the .deb as a mail admin installs it. Boots a stock
# Debian 12 root under a real systemd (systemd-nspawn, private network) with Debian's postfix
# and php8.2-fpm as services, installs the freshly built package with `apt install ./x.deb`,
# runs the commands of README.md's "Install from the package" section as they are written
# (the ```sh blocks after <!-- container-test: NAME --> markers), and checks through SMTP and
# systemctl: a mail stored in the Maildir, 550 for an unknown recipient, every systemctl verb,
# the journal, restarts of Postfix and php-fpm, an upgrade with a modified conffile and a save in
# flight, a reboot, remove and purge. A second container does the same with Debian's sendmail.
#
#   tests/container/container_test.sh [postfix] [sendmail]     (default: both)
#
# Needs root, debootstrap and systemd-nspawn (scripts/install-deps). Not root: exit 77 (ctest:
# skipped). Anything else missing or broken fails. The base root (debootstrap + the packages)
# comes from the Debian mirror the first time (a few minutes) and is cached in
# $FCGI_MILTER_CONTAINER_CACHE (default /var/cache/fcgi-milter-test), keyed by a hash of its
# recipe; FCGI_MILTER_DEBIAN_MIRROR picks the mirror. The .deb is dist/'s when it is newer than
# every source file (the packaging test builds it), else built here (FCGI_MILTER_CONTAINER_DEB
# names another, for a quick rerun). FCGI_MILTER_KEEP_TEST_DIRS=1
# keeps the roots. Not thread-safe with itself: ctest runs it RUN_SERIAL.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
started=$SECONDS
failures=0
mtas=("$@")
[ ${#mtas[@]} -eq 0 ] && mtas=(postfix sendmail)

say() { echo "# $*"; }
pass() { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; failures=$((failures + 1)); }
check() {  # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
check_log() {  # check_log LOG DESCRIPTION COMMAND...: COMMAND's output goes to LOG
  local log=$1 what=$2; shift 2
  if "$@" > "$log" 2>&1; then pass "$what"; else fail "$what (log: $log)"; cat "$log"; fi
}
die() { echo "FAIL - $*"; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
  echo "container test: needs root (debootstrap, systemd-nspawn); skipped"
  exit 77
fi
for tool in debootstrap systemd-nspawn nsenter dpkg-deb; do
  command -v "$tool" >/dev/null || die "$tool missing: run scripts/install-deps"
done

mirror=${FCGI_MILTER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${FCGI_MILTER_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
cache=${FCGI_MILTER_CONTAINER_CACHE:-/var/cache/fcgi-milter-test}
arch=$(dpkg --print-architecture)
version=$(sed -n -E 's/^project\(fcgi-milter[[:space:]]+VERSION[[:space:]]+([0-9][0-9.]*).*/\1/p' \
  "$src/CMakeLists.txt")

work=$(mktemp -d /var/tmp/fcgi-milter-container.XXXXXX)
nspawn_pid=
cleanup() {
  stop_container || true
  for m in "$work"/root-*/proc; do mountpoint -q "$m" 2>/dev/null && umount "$m"; done
  if [ "${FCGI_MILTER_KEEP_TEST_DIRS:-0}" = 1 ]; then
    echo "# kept $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# --- The packages: -1 as built (dist/ when fresh), and -2, the same files under a newer version,
# for the upgrade.
deb1="$src/dist/fcgi-milter_${version}-1_${arch}.deb"
fresh=0
if [ -f "$deb1" ]; then
  newer=$(find "$src" \( -path "$src/.git" -o -path "$src/build*" -o -path "$src/dist" \
    -o -path "$src/.cache" \) -prune -o -type f -newer "$deb1" -print -quit)
  [ -z "$newer" ] && fresh=1
fi
if [ -n "${FCGI_MILTER_CONTAINER_DEB:-}" ]; then
  deb1=$FCGI_MILTER_CONTAINER_DEB
  say "using $deb1 (FCGI_MILTER_CONTAINER_DEB)"
elif [ $fresh = 1 ]; then
  say "using $deb1 (newer than every source file)"
else
  say "building the .deb: packaging/build-packages --deb"
  "$src/packaging/build-packages" --deb --no-lintian -o "$work/dist" > "$work/build.log" 2>&1 || {
    tail -n 40 "$work/build.log"; die "packaging/build-packages failed"; }
  deb1="$work/dist/fcgi-milter_${version}-1_${arch}.deb"
fi
mkdir -p "$work/deb2"
dpkg-deb -R "$deb1" "$work/deb2/tree"
sed -i "s/^Version: .*/Version: ${version}-2/" "$work/deb2/tree/DEBIAN/control"
deb2="$work/deb2/fcgi-milter_${version}-2_${arch}.deb"
dpkg-deb --root-owner-group -b "$work/deb2/tree" "$deb2" >/dev/null

# --- The base root: Debian 12 minbase + systemd, dbus, php8.2-fpm, swaks, the daemon's libraries;
# postfix and sendmail (which conflict) downloaded only, into apt's cache, for the containers.
# The package's own dependencies come from the .deb (first alternative, no versions), so the
# containers install it offline, and a new dependency makes a new base.
deb_depends=$(dpkg-deb -f "$deb1" Depends | tr ',' '\n' | sed -E 's/\|.*//; s/\(.*\)//; s/[[:space:]]//g' |
  grep -v '^$' | sort -u | tr '\n' ' ')
base_packages="systemd systemd-sysv dbus php8.2-fpm swaks procps man-db $deb_depends"
download_only="postfix sendmail"
recipe="bookworm $arch $mirror $security_mirror | $base_packages | $download_only | v1"
key=$(echo "$recipe" | sha256sum | cut -c1-16)
base_tar="$cache/bookworm-base-$key.tar"

in_chroot() {  # in_chroot ROOT COMMAND...: with /proc mounted, network and host name mx.example.test
  local root=$1; shift
  mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
  unshare -u chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 sh -c 'hostname mx.example.test && exec "$@"' sh "$@"
  local rc=$?
  umount "$root/proc"
  return $rc
}

build_base() {
  local root="$work/base" t0=$SECONDS
  say "building the base root from $mirror (cached afterwards as $base_tar)"
  debootstrap --variant=minbase bookworm "$root" "$mirror" > "$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log"; die "debootstrap failed"; }
  cat > "$root/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security_mirror bookworm-security main
EOF
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  # shellcheck disable=SC2086
  in_chroot "$root" sh -ec "
    apt-get update -q
    apt-get install -y -q --no-install-recommends $base_packages
    apt-get clean
    for p in $download_only; do apt-get install -y -q -d --no-install-recommends \$p; done
  " > "$work/base-apt.log" 2>&1 || { tail -n 30 "$work/base-apt.log"; die "base packages failed"; }
  rm -f "$root/etc/resolv.conf"
  # apt inside the containers answers yes (they run the README's `apt install` unattended).
  echo 'APT::Get::Assume-Yes "true";' > "$root/etc/apt/apt.conf.d/90fcgi-milter-test"
  mkdir -p "$cache"
  tar -C "$root" -cf "$base_tar.tmp" .
  mv "$base_tar.tmp" "$base_tar"
  find "$cache" -name 'bookworm-base-*.tar' ! -name "$(basename "$base_tar")" -delete
  rm -rf "$root"
  say "base root built in $((SECONDS - t0)) s"
}
if [ -f "$base_tar" ]; then
  say "reusing the base root $base_tar"
else
  build_base
fi

# --- README.md's blocks: the ```sh block after <!-- container-test: NAME -->.
readme_block() {
  awk -v name="$1" '
    $0 == "<!-- container-test: " name " -->" { armed = 1; next }
    armed && /^```sh$/ { inside = 1; next }
    inside && /^```$/ { exit }
    inside { print }
  ' "$src/README.md"
}
for b in install try postfix postfix-check sendmail sendmail-check; do
  [ -n "$(readme_block "$b")" ] || die "README.md has no \`\`\`sh block after <!-- container-test: $b -->"
done

# --- A container.
in_ct() {  # in_ct COMMAND...: in the booted container, as root, in /root
  nsenter -t "$init_pid" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    TERM=dumb DEBIAN_FRONTEND=noninteractive SYSTEMD_PAGER= SYSTEMD_COLORS=0 \
    sh -c 'cd /root && exec "$@"' sh "$@"
}
ct_sh() { in_ct bash -o pipefail -c "$1"; }

boot() {  # boot ROOT NAME
  local root=$1 name=$2
  systemd-nspawn -D "$root" -b --private-network --register=no --keep-unit -M "$name" \
    --hostname=mx.example.test </dev/null > "$work/$name.console" 2>&1 &
  nspawn_pid=$!
  init_pid=
  for _ in $(seq 100); do
    init_pid=$(pgrep -P "$nspawn_pid" -x systemd || true)
    [ -n "$init_pid" ] && break
    sleep 0.1
  done
  [ -n "$init_pid" ] || { cat "$work/$name.console"; die "$name: no systemd in the container"; }
  local state=
  for _ in $(seq 60); do
    state=$(in_ct systemctl is-system-running --wait 2>&1 || true)
    case "$state" in running | degraded) break ;; esac
    sleep 0.5
  done
  say "$name booted: $state"
  if [ "$state" != running ]; then
    in_ct systemctl --failed --no-legend | sed 's/^/#   failed unit: /'
  fi
}
stop_container() {
  [ -n "$nspawn_pid" ] || return 0
  kill -TERM "$nspawn_pid" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$nspawn_pid" 2>/dev/null || true
  wait "$nspawn_pid" 2>/dev/null || true
  nspawn_pid=
}

# swaks inside the container; prints the SMTP dialogue's last server line for DATA or RCPT.
smtp() {  # smtp TO SUBJECT [swaks args...]
  local to=$1 subject=$2; shift 2
  # A sender domain Sendmail can resolve (no DNS in the container: /etc/hosts).
  in_ct swaks --server 127.0.0.1:25 --from sender@mx.example.test --to "$to" \
    --header "Subject: $subject" --body "container test: $subject" --timeout 60 "$@" 2>&1 || true
}
stored() {  # stored SUBJECT: a file in the Maildir holds the subject
  ct_sh "grep -rlsF 'Subject: $1' /var/lib/fcgi-milter/Maildir/new/ >/dev/null"
}
journal_has() {  # journal_has UNIT TEXT
  ct_sh "journalctl -u $1 --no-pager -o cat | grep -qF -- '$2'"
}
main_pid() { in_ct systemctl show -p MainPID --value fcgi-milter; }
wait_active() {
  for _ in $(seq 50); do
    [ "$(in_ct systemctl is-active fcgi-milter 2>/dev/null)" = active ] && return 0
    sleep 0.2
  done
  return 1
}

run_mta() {
  local mta=$1 root="$work/root-$1" name="fm-$1-$$" t0=$SECONDS failures_before=$failures
  say "=== $mta container"
  mkdir -p "$root"
  tar -C "$root" -xf "$base_tar"
  echo "mx.example.test" > "$root/etc/mailname"
  echo "mx.example.test" > "$root/etc/hostname"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\tmx.example.test mx\n::1\tlocalhost ip6-localhost\n' \
    > "$root/etc/hosts"
  # The MTA, installed as on a running mail server (from the base's apt cache: no network).
  if [ "$mta" = postfix ]; then
    in_chroot "$root" sh -ec '
      echo "postfix postfix/main_mailer_type select Internet Site" | debconf-set-selections
      echo "postfix postfix/mailname string mx.example.test" | debconf-set-selections
      apt-get install -y -q --no-download --no-install-recommends postfix' \
      > "$work/$mta-apt.log" 2>&1 || { tail -n 30 "$work/$mta-apt.log"; die "postfix install failed"; }
  else
    in_chroot "$root" apt-get install -y -q --no-download --no-install-recommends sendmail \
      > "$work/$mta-apt.log" 2>&1 || { tail -n 30 "$work/$mta-apt.log"; die "sendmail install failed"; }
  fi
  cp "$deb1" "$root/root/"
  mkdir -p "$root/root/upgrade"
  cp "$deb2" "$root/root/upgrade/"
  # The upgrade's modified conffile: a save script that takes 4 s, then the example's.
  mkdir -p "$root/usr/local/lib/fcgi-milter-test"
  cat > "$root/usr/local/lib/fcgi-milter-test/slow-save.php" <<'EOF'
<?php
sleep(4);
require '/usr/share/fcgi-milter/examples/save.php';
EOF
  chmod 644 "$root/usr/local/lib/fcgi-milter-test/slow-save.php"

  boot "$root" "$name"
  check "$mta: $mta is active before the package" \
    test "$(in_ct systemctl is-active "$mta")" = active
  check "$mta: php8.2-fpm is active before the package" \
    test "$(in_ct systemctl is-active php8.2-fpm)" = active

  # 1. README: install, try, then the MTA's lines.
  say "README install block:"; readme_block install | sed 's/^/#   /'
  check_log "$work/$mta-install.log" "$mta: README install block runs" \
    ct_sh "set -e; $(readme_block install)"
  sed 's/^/#   | /' "$work/$mta-install.log" | tail -n 25
  check "$mta: no apt Recommends pulled in an MTA (only fcgi-milter installed)" \
    ct_sh "! grep -E '^(Inst|Setting up) (postfix|sendmail|exim)' /var/log/apt/term.log"
  check "$mta: dpkg has fcgi-milter installed and configured" \
    test "$(in_ct dpkg-query -W -f='${Status}' fcgi-milter)" = "install ok installed"
  check "$mta: fcgi-milter.service is enabled at boot" \
    test "$(in_ct systemctl is-enabled fcgi-milter)" = enabled
  if [ "$mta" = postfix ]; then
    check "$mta: fcgi-milter.service is active after apt install" wait_active
  else
    check "$mta: before the switch to Sendmail's config the journal says why it cannot start" \
      journal_has fcgi-milter "Unable to bind to port unix:/var/spool/postfix/fcgi-milter/fcgi-milter.sock"
  fi
  check "$mta: php-fpm's own pool socket is fcgi-milter-php:fcgi-milter 660" \
    test "$(in_ct stat -c '%U:%G %a' /run/php/fcgi-milter.sock)" = "fcgi-milter-php:fcgi-milter 660"
  check "$mta: the system's www pool still answers (socket present, php8.2-fpm active)" \
    ct_sh "test -S /run/php/php8.2-fpm.sock && systemctl is-active -q php8.2-fpm"
  check "$mta: Maildir /var/lib/fcgi-milter/Maildir is fcgi-milter-php 700" \
    test "$(in_ct stat -c '%U %a' /var/lib/fcgi-milter/Maildir)" = "fcgi-milter-php 700"

  say "README try block:"; readme_block try | sed 's/^/#   /'
  check_log "$work/$mta-try.log" "$mta: README try block: exit 0, a message stored" \
    ct_sh "set -e; $(readme_block try)"
  tail -n 3 "$work/$mta-try.log" | sed 's/^/#   | /'

  local subject conf_block check_block
  conf_block=$(readme_block "$mta")
  check_block=$(readme_block "$mta-check")
  say "README $mta block:"; echo "$conf_block" | sed 's/^/#   /'
  check_log "$work/$mta-conf.log" "$mta: README $mta block runs" ct_sh "set -e; $conf_block"
  sed 's/^/#   | /' "$work/$mta-conf.log" | tail -n 15
  say "README $mta-check block:"; echo "$check_block" | sed 's/^/#   /'
  check_log "$work/$mta-check.log" "$mta: README $mta-check block: 250 and a file in the Maildir" \
    ct_sh "set -e; $check_block"
  tail -n 8 "$work/$mta-check.log" | sed 's/^/#   | /'

  check "$mta: fcgi-milter.service is active" wait_active
  check "$mta: the daemon runs as fcgi-milter, not in group www-data" \
    ct_sh "test \"\$(ps -o user= -p \$(systemctl show -p MainPID --value fcgi-milter))\" = fcgi-milter &&
           ! id -nG fcgi-milter | grep -qw www-data"

  # 2. SMTP: stored, refused.
  subject="stored-$mta-$$"
  check "$mta: a mail to someone@example.test gets 250" \
    grep -q '<-  250 2\.0\.0' <(smtp someone@example.test "$subject")
  check "$mta: ... and is stored in /var/lib/fcgi-milter/Maildir/new" stored "$subject"
  check "$mta: the journal of fcgi-milter has the message's line (from=, rcpts=, verdict=accept)" \
    ct_sh "journalctl -u fcgi-milter --no-pager -o cat |
           grep -E 'from=<sender@mx.example.test> rcpts=1 .*verdict=accept' >/dev/null"
  ct_sh "printf 'alice@example.test\npostmaster@example.test\n' > /etc/fcgi-milter/recipients.txt"
  check "$mta: an unknown recipient (recipients.txt without it) gets 550 5.1.1" \
    grep -q '<\*\* 550 5.1.1' <(smtp bob@example.test "unknown-$$")
  check "$mta: a listed recipient still gets 250" \
    grep -q '<-  250 2\.0\.0' <(smtp alice@example.test "listed-$$")

  # 3. systemctl verbs.
  local pid1 pid2
  pid1=$(main_pid)
  check "$mta: systemctl reload succeeds" in_ct systemctl reload fcgi-milter
  sleep 0.5
  check "$mta: the reload is in the journal ('reloaded')" journal_has fcgi-milter reloaded
  check "$mta: reload keeps the process ($pid1)" test "$(main_pid)" = "$pid1"
  in_ct systemctl status --no-pager -n 8 fcgi-milter > "$work/$mta-status.txt" 2>&1 || true
  sed 's/^/#   status: /' "$work/$mta-status.txt"
  check "$mta: systemctl status shows recent log lines" grep -q 'reloaded' "$work/$mta-status.txt"

  check "$mta: systemctl restart $mta" in_ct systemctl restart "$mta"
  sleep 1
  check "$mta: after restarting $mta, mail is stored without a daemon restart" \
    grep -q '<-  250 2\.0\.0' <(smtp alice@example.test "after-mta-restart-$$")
  check "$mta: php8.2-fpm restart" in_ct systemctl restart php8.2-fpm
  check "$mta: after restarting php-fpm, mail is stored without a daemon restart" \
    grep -q '<-  250 2\.0\.0' <(smtp alice@example.test "after-fpm-restart-$$")
  check "$mta: ... the daemon is the same process" test "$(main_pid)" = "$pid1"

  check "$mta: systemctl stop" in_ct systemctl stop fcgi-milter
  check "$mta: after stop the unit is inactive, not failed" \
    test "$(in_ct systemctl is-active fcgi-milter || true)" = inactive
  check "$mta: the journal says 'stopped'" journal_has fcgi-milter stopped
  check "$mta: systemctl start" in_ct systemctl start fcgi-milter
  check "$mta: systemctl restart" in_ct systemctl restart fcgi-milter
  wait_active || true
  pid2=$(main_pid)
  check "$mta: restart gives a new process ($pid1 -> $pid2)" test "$pid2" != "$pid1" -a "$pid2" != 0
  check "$mta: mail after restart gets 250" \
    grep -q '<-  250 2\.0\.0' <(smtp alice@example.test "after-restart-$$")

  # 4. Upgrade with a modified conffile and a save in flight.
  ct_sh "sed -i 's|\"/usr/share/fcgi-milter/examples/save.php\"|\"/usr/local/lib/fcgi-milter-test/slow-save.php\"|' \
    /etc/fcgi-milter/fcgi-milter.json && systemctl reload fcgi-milter"
  sleep 0.5
  subject="in-flight-$mta-$$"
  smtp alice@example.test "$subject" > "$work/$mta-inflight.txt" &
  local swaks_pid=$!
  sleep 2
  check_log "$work/$mta-upgrade.log" "$mta: apt install of the -2 package over -1" \
    ct_sh "apt install ./upgrade/fcgi-milter_${version}-2_${arch}.deb"
  tail -n 6 "$work/$mta-upgrade.log" | sed 's/^/#   | /'
  wait "$swaks_pid" || true
  check "$mta: the mail in flight during the upgrade got 250" \
    grep -q '<-  250 2\.0\.0' "$work/$mta-inflight.txt"
  check "$mta: ... and is stored" stored "$subject"
  check "$mta: dpkg has fcgi-milter ${version}-2" \
    test "$(in_ct dpkg-query -W -f='${Version}' fcgi-milter)" = "${version}-2"
  check "$mta: the modified conffile survived the upgrade" \
    ct_sh "grep -q slow-save.php /etc/fcgi-milter/fcgi-milter.json"
  wait_active || true
  check "$mta: the service runs after the upgrade, restarted ($pid2 -> $(main_pid))" \
    test "$(in_ct systemctl is-active fcgi-milter)" = active -a "$(main_pid)" != "$pid2"
  ct_sh "sed -i 's|\"/usr/local/lib/fcgi-milter-test/slow-save.php\"|\"/usr/share/fcgi-milter/examples/save.php\"|' \
    /etc/fcgi-milter/fcgi-milter.json && systemctl reload fcgi-milter"

  # 5. Enabled at boot: power off, boot the same root again.
  if [ "$mta" = postfix ]; then
    stop_container
    boot "$root" "$name"
    check "$mta: after a reboot fcgi-milter is active" \
      test "$(in_ct systemctl is-active fcgi-milter)" = active
    check "$mta: after a reboot mail gets 250" \
      grep -q '<-  250 2\.0\.0' <(smtp alice@example.test "after-reboot-$$")
  fi

  if [ $failures -ne $failures_before ]; then
    say "$mta: failures: the container's journal (last 60 lines of the MTA, php-fpm, fcgi-milter):"
    in_ct journalctl --no-pager -n 60 -o short-iso _SYSTEMD_UNIT=fcgi-milter.service + \
      _SYSTEMD_UNIT=php8.2-fpm.service + SYSLOG_FACILITY=2 2>&1 | sed 's/^/#   /' || true
  fi
  # For the report: the journal lines of the first stored message and of a reload.
  ct_sh "journalctl -u fcgi-milter --no-pager -o short-iso |
         grep -E 'reloaded|from=<sender@mx.example.test>.*verdict=' | head -n 3" \
    | sed "s/^/#   journal ($mta): /" || true

  # 6. Remove keeps the config; purge removes the package's own.
  check_log "$work/$mta-remove.log" "$mta: apt remove" ct_sh "apt remove fcgi-milter"
  check "$mta: after remove the config stays" ct_sh "test -f /etc/fcgi-milter/fcgi-milter.json"
  check "$mta: after remove the unit is gone" \
    ct_sh "! systemctl is-active -q fcgi-milter && test ! -e /lib/systemd/system/fcgi-milter.service"
  check "$mta: after remove php8.2-fpm and $mta still run" \
    ct_sh "systemctl is-active -q php8.2-fpm && systemctl is-active -q $mta"
  check_log "$work/$mta-purge.log" "$mta: apt purge" ct_sh "apt purge fcgi-milter"
  sed 's/^/#   | /' "$work/$mta-purge.log" | grep -i 'fcgi-milter:' || true
  check "$mta: after purge /etc/fcgi-milter and the pool are gone" \
    ct_sh "test ! -e /etc/fcgi-milter -a ! -e /etc/php/8.2/fpm/pool.d/fcgi-milter.conf"
  check "$mta: after purge user fcgi-milter and the socket directory are gone" \
    ct_sh "! getent passwd fcgi-milter && ! getent group fcgi-milter && test ! -e /var/spool/postfix/fcgi-milter"
  check "$mta: after purge the Maildir with mail is kept, with its owner fcgi-milter-php" \
    ct_sh "test -n \"\$(ls /var/lib/fcgi-milter/Maildir/new)\" && getent passwd fcgi-milter-php >/dev/null"
  check "$mta: after purge php8.2-fpm runs, its pool socket is gone" \
    ct_sh "systemctl is-active -q php8.2-fpm && test ! -e /run/php/fcgi-milter.sock"
  check "$mta: after purge no failed units" \
    test -z "$(in_ct systemctl --failed --no-legend --plain 2>/dev/null)"
  stop_container
  say "$mta container: $((SECONDS - t0)) s"
}

for mta in "${mtas[@]}"; do
  case "$mta" in
    postfix | sendmail) run_mta "$mta" ;;
    *) die "unknown MTA '$mta' (postfix, sendmail)" ;;
  esac
done

echo "# $((SECONDS - started)) s, $failures failure(s)"
[ $failures -eq 0 ]
