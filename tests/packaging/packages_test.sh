#!/usr/bin/env bash
# Packaging test (ctest label "packaging"): builds the .deb and .rpm with packaging/build-packages
# (or reuses dist/ when it is newer than every source file), installs the .deb on this machine,
# checks the installed files, user, socket directory, `fcgi-milter -t` (from the installed config,
# then as the fcgi-milter user against a private php-fpm), the systemd unit, the .rpm's metadata,
# and that remove + purge leave nothing behind. Needs root (it is meant for CI machines); exits 77
# (ctest: skipped) otherwise. FCGI_MILTER_PACKAGES_REBUILD=1 forces a rebuild.
# Not thread-safe with itself or apt: ctest runs it RUN_SERIAL.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dist="$root/dist"
started=$SECONDS
failures=0

pass() { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; failures=$((failures + 1)); }
check() {  # check DESCRIPTION COMMAND...: records the result of running COMMAND
  local what=$1; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
quiet() { "$@" >/dev/null 2>&1; }

if [ "$(id -u)" -ne 0 ]; then
  echo "packaging test: needs root (dpkg -i); skipped"
  exit 77
fi
for tool in dpkg rpm systemd-analyze lintian setpriv php-fpm8.2; do
  if ! command -v "$tool" >/dev/null; then
    echo "packaging test: $tool missing (scripts/install-deps installs it); skipped"
    exit 77
  fi
done

version=$(sed -n -E 's/^project\(fcgi-milter[[:space:]]+VERSION[[:space:]]+([0-9][0-9.]*).*/\1/p' \
  "$root/CMakeLists.txt")
arch=$(dpkg --print-architecture)
deb="$dist/fcgi-milter_${version}-1_${arch}.deb"
rpm_file=$(ls "$dist"/fcgi-milter-"$version"-1.*.rpm 2>/dev/null | head -n 1 || true)

# --- 1. Packages: reuse dist/ only when both exist and no source file is newer than either.
fresh=0
if [ "${FCGI_MILTER_PACKAGES_REBUILD:-0}" != 1 ] && [ -f "$deb" ] && [ -n "$rpm_file" ]; then
  older=$deb
  [ "$rpm_file" -ot "$deb" ] && older=$rpm_file
  newer_source=$(find "$root" \( -path "$root/.git" -o -path "$root/build*" -o -path "$root/dist" \
    -o -path "$root/.cache" \) -prune -o -type f -newer "$older" -print -quit)
  [ -z "$newer_source" ] && fresh=1
fi
if [ $fresh = 1 ]; then
  echo "# reusing $deb and $rpm_file (newer than every source file)"
  lintian_out=$(lintian --allow-root --fail-on error "$deb" 2>&1) && lintian_rc=0 || lintian_rc=$?
  echo "$lintian_out" | sed 's/^/#   lintian: /'
  check "lintian reports no errors for the .deb" test "$lintian_rc" = 0
else
  echo "# building packages: packaging/build-packages"
  check "packaging/build-packages builds the .deb and .rpm (lintian: no errors)" \
    "$root/packaging/build-packages"
  rpm_file=$(ls "$dist"/fcgi-milter-"$version"-1.*.rpm 2>/dev/null | head -n 1 || true)
fi
if [ ! -f "$deb" ] || [ -z "$rpm_file" ]; then
  echo "FAIL - no packages in $dist; giving up"
  exit 1
fi

# --- 2. Install the .deb (a leftover from an earlier run is purged first).
if dpkg-query -W -f='${Status}' fcgi-milter 2>/dev/null | grep -q 'ok installed\|config-files'; then
  dpkg -P fcgi-milter >/dev/null
fi
check "dpkg -i installs the .deb" dpkg -i "$deb"
check "dpkg reports fcgi-milter installed at $version-1" \
  test "$(dpkg-query -W -f='${Status} ${Version}' fcgi-milter)" = "install ok installed $version-1"
installed_files=$(dpkg -L fcgi-milter)

for f in /usr/sbin/fcgi-milter /etc/fcgi-milter/fcgi-milter.json \
    /usr/share/fcgi-milter/examples/validate.php /usr/share/fcgi-milter/examples/save.php \
    /usr/share/fcgi-milter/examples/recipients.txt /lib/systemd/system/fcgi-milter.service \
    /etc/fcgi-milter/recipients.txt /etc/php/8.2/fpm/pool.d/fcgi-milter.conf \
    /usr/share/fcgi-milter/fcgi-milter-sendmail.json \
    /usr/lib/sysusers.d/fcgi-milter.conf /usr/lib/tmpfiles.d/fcgi-milter.conf \
    /usr/share/man/man8/fcgi-milter.8.gz /usr/share/man/man5/fcgi-milter.json.5.gz \
    /usr/share/doc/fcgi-milter/copyright; do
  check "installed: $f" test -f "$f"
done
for f in /etc/fcgi-milter/fcgi-milter.json /etc/fcgi-milter/recipients.txt \
    /etc/php/8.2/fpm/pool.d/fcgi-milter.conf; do
  check "$f is a conffile" grep -q " $f " <(dpkg-query -W -f='${Conffiles}\n' fcgi-milter)
done
check "the Sendmail config differs from the Postfix one in the milter socket only" \
  test "$(diff /etc/fcgi-milter/fcgi-milter.json /usr/share/fcgi-milter/fcgi-milter-sendmail.json |
          grep -c '^>')" = 3
check "php-fpm8.2 -t accepts the packaged pool" quiet php-fpm8.2 -t
check "--version names $version" grep -qx "fcgi-milter $version" <(/usr/sbin/fcgi-milter --version)
check "the man pages render without warnings" \
  test -z "$(man --warnings -l /usr/share/man/man8/fcgi-milter.8.gz \
             /usr/share/man/man5/fcgi-milter.json.5.gz 2>&1 >/dev/null)"

check "system user fcgi-milter exists" quiet getent passwd fcgi-milter
uid=$(id -u fcgi-milter 2>/dev/null || echo 0)
check "fcgi-milter is a system user (uid $uid < 1000) with no login shell" \
  test "$uid" -gt 0 -a "$uid" -lt 1000 -a "$(getent passwd fcgi-milter | cut -d: -f7)" != /bin/bash
check "group fcgi-milter exists" quiet getent group fcgi-milter
check "fcgi-milter is not in group www-data (the package has its own pool)" \
  test -z "$(id -nG fcgi-milter | tr ' ' '\n' | grep -x www-data)"
check "system user fcgi-milter-php (the pool's) exists, no login shell" \
  test "$(getent passwd fcgi-milter-php | cut -d: -f7)" = /usr/sbin/nologin
check "Maildir /var/lib/fcgi-milter/Maildir is fcgi-milter-php 0700" \
  test "$(stat -c '%U %a' /var/lib/fcgi-milter/Maildir 2>/dev/null)" = "fcgi-milter-php 700"
if getent group postfix >/dev/null; then
  check "socket directory /var/spool/postfix/fcgi-milter is fcgi-milter:postfix 0750" \
    test "$(stat -c '%U:%G %a' /var/spool/postfix/fcgi-milter 2>/dev/null)" = "fcgi-milter:postfix 750"
fi

# --- 3. fcgi-milter -t from the installed files. Unless a system php-fpm is running, the only
# complaint allowed is the FastCGI backend's (its socket is missing).
t_out=$(/usr/sbin/fcgi-milter -t -c /etc/fcgi-milter/fcgi-milter.json 2>&1) && t_rc=0 || t_rc=$?
echo "$t_out" | sed 's/^/#   -t: /'
other=$(echo "$t_out" | grep -v -e ': ok$' -e 'FastCGI backend' || true)
check "-t on the installed config complains only about the FastCGI backend (rc $t_rc)" \
  test -z "$other" -a "$t_rc" -le 1

# The same config pointed at a private php-fpm running the packaged pool (its socket
# fcgi-milter-php:fcgi-milter 0660), run as the fcgi-milter user: passes only with the packaged
# users, the pool's socket group and a valid socket directory.
tmp=$(mktemp -d /tmp/fcgi-milter-packaging.XXXXXX)
chmod 755 "$tmp"
fpm_pid=
cleanup() {
  if [ -n "$fpm_pid" ]; then
    kill "$fpm_pid" 2>/dev/null || true
    wait "$fpm_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
cat > "$tmp/php-fpm.conf" <<EOF
[global]
pid = $tmp/php-fpm.pid
error_log = $tmp/php-fpm.log
daemonize = no
EOF
sed "s|^listen = .*|listen = $tmp/php-fpm.sock|" /etc/php/8.2/fpm/pool.d/fcgi-milter.conf \
  >> "$tmp/php-fpm.conf"
php-fpm8.2 -F -y "$tmp/php-fpm.conf" > "$tmp/php-fpm.out" 2>&1 &
fpm_pid=$!
for _ in $(seq 50); do [ -S "$tmp/php-fpm.sock" ] && break; sleep 0.1; done
sed "s|\"/run/php/fcgi-milter.sock\"|\"$tmp/php-fpm.sock\"|" /etc/fcgi-milter/fcgi-milter.json \
  > "$tmp/fcgi-milter.json"
chmod 644 "$tmp/fcgi-milter.json"
t_out=$(setpriv --reuid fcgi-milter --regid fcgi-milter --init-groups \
  /usr/sbin/fcgi-milter -t -c "$tmp/fcgi-milter.json" 2>&1) && t_rc=0 || t_rc=$?
echo "$t_out" | sed 's/^/#   -t as fcgi-milter, private php-fpm: /'
check "-t as user fcgi-milter against the packaged pool's socket passes" test "$t_rc" = 0

# The start-up the unit relies on, without systemd: as root but limited to the unit's
# CapabilityBoundingSet and NoNewPrivileges, the daemon binds the socket in the packaged
# directory, gives it to fcgi-milter:postfix 0660, writes the pid file, drops to fcgi-milter,
# reloads on SIGUSR1 and stops cleanly on SIGTERM.
if getent group postfix >/dev/null; then
  sed 's/"log_target": "syslog"/"log_target": "stderr"/' "$tmp/fcgi-milter.json" > "$tmp/run.json"
  made_run_dir=0
  [ -d /run/fcgi-milter ] || { mkdir -m 0755 /run/fcgi-milter; made_run_dir=1; }  # RuntimeDirectory=
  sock=/var/spool/postfix/fcgi-milter/fcgi-milter.sock
  (umask 0027; exec setpriv --no-new-privs --bounding-set -all,+setuid,+setgid,+chown,+dac_override \
    /usr/sbin/fcgi-milter -c "$tmp/run.json") > "$tmp/run.log" 2>&1 &
  milter_pid=$!
  for _ in $(seq 50); do [ -S "$sock" ] && grep -q listening "$tmp/run.log" && break; sleep 0.1; done
  check "daemon under the unit's capabilities listens on $sock (fcgi-milter:postfix 660)" \
    test "$(stat -c '%U:%G %a' "$sock" 2>/dev/null)" = "fcgi-milter:postfix 660"
  status=$(cat "/proc/$milter_pid/status" 2>/dev/null || true)
  check "daemon runs as fcgi-milter:fcgi-milter" \
    test "$(awk '/^Uid:/ { print $2 $3 $4 $5 }' <<< "$status")" = "$uid$uid$uid$uid" -a \
    "$(awk '/^Gid:/ { print $2 }' <<< "$status")" = "$(getent group fcgi-milter | cut -d: -f3)"
  check "daemon wrote its pid to /run/fcgi-milter/fcgi-milter.pid" \
    test "$(cat /run/fcgi-milter/fcgi-milter.pid 2>/dev/null)" = "$milter_pid"
  kill -USR1 "$milter_pid" 2>/dev/null || true
  for _ in $(seq 30); do grep -q reloaded "$tmp/run.log" && break; sleep 0.1; done
  check "daemon reloads on SIGUSR1" grep -q reloaded "$tmp/run.log"
  kill -TERM "$milter_pid" 2>/dev/null || true
  milter_rc=0
  wait "$milter_pid" || milter_rc=$?
  check "daemon stops with status 0 on SIGTERM and removes its socket" \
    test "$milter_rc" = 0 -a ! -e "$sock"
  sed 's/^/#   daemon: /' "$tmp/run.log"
  [ $made_run_dir = 1 ] && rm -rf /run/fcgi-milter
fi

# --- 4. The unit: systemd-analyze verify (no running systemd needed) and its hardening score.
v_out=$(systemd-analyze verify /lib/systemd/system/fcgi-milter.service 2>&1) && v_rc=0 || v_rc=$?
echo "$v_out" | sed 's/^/#   verify: /'
check "systemd-analyze verify accepts fcgi-milter.service" \
  test "$v_rc" = 0 -a -z "$(echo "$v_out" | grep fcgi-milter || true)"
score=$(systemd-analyze security --offline=yes /lib/systemd/system/fcgi-milter.service 2>/dev/null |
  sed -n 's/.*Overall exposure level for fcgi-milter.service: \([0-9.]*\).*/\1/p')
echo "#   systemd-analyze security: exposure $score"
check "the unit's exposure level is at most 4.0 (got ${score:-none})" \
  awk -v s="${score:-99}" 'BEGIN { exit !(s <= 4.0) }'
for key in Type=notify 'ExecStart=/usr/sbin/fcgi-milter -c /etc/fcgi-milter/fcgi-milter.json' \
    'ExecReload=+/bin/kill -USR1 $MAINPID' NoNewPrivileges=yes ProtectSystem=strict \
    RuntimeDirectory=fcgi-milter; do
  check "unit sets $key" grep -qxF "$key" /lib/systemd/system/fcgi-milter.service
done

# --- 5. The .rpm: files, dependencies, scriptlets, config.
rpm_list=$(rpm -qp --list "$rpm_file" 2>/dev/null)
for f in /usr/sbin/fcgi-milter /etc/fcgi-milter/fcgi-milter.json \
    /usr/lib/systemd/system/fcgi-milter.service /usr/lib/sysusers.d/fcgi-milter.conf \
    /usr/lib/tmpfiles.d/fcgi-milter.conf /usr/share/fcgi-milter/examples/save.php \
    /usr/share/man/man8/fcgi-milter.8 /usr/share/man/man5/fcgi-milter.json.5; do
  check "rpm lists $f" grep -qx "$f" <<< "$rpm_list"
done
check "rpm marks the config %config(noreplace)" \
  grep -qx '/etc/fcgi-milter/fcgi-milter.json' <(rpm -qp --configfiles "$rpm_file" 2>/dev/null)
rpm_requires=$(rpm -qp --requires "$rpm_file" 2>/dev/null)
for dep in sendmail-milter libevent systemd-libs shadow-utils 'libmilter.so' 'libevent_core-2.1.so.7' \
    'libsystemd.so.0'; do
  check "rpm requires $dep" grep -q "^$dep" <<< "$rpm_requires"
done
rpm_scripts=$(rpm -qp --scripts "$rpm_file" 2>/dev/null)
check "rpm %pre creates the user" grep -q 'useradd -r -g fcgi-milter' <<< "$rpm_scripts"
check "rpm %post creates the socket directory" grep -q 'systemd-tmpfiles --create' <<< "$rpm_scripts"
check "rpm %preun stops the service on erase" \
  grep -q 'disable --now fcgi-milter.service' <<< "$rpm_scripts"
check "rpm version is $version-1" \
  test "$(rpm -qp --qf '%{VERSION}-%{RELEASE}' "$rpm_file" 2>/dev/null)" = "$version-1"

# --- 6. Remove keeps the conffile; purge leaves nothing of the package behind. The private
# php-fpm runs as fcgi-milter-php, which purge removes: stop it first.
if [ -n "$fpm_pid" ]; then
  kill "$fpm_pid" 2>/dev/null || true
  wait "$fpm_pid" 2>/dev/null || true
  fpm_pid=
fi
check "dpkg -r removes the package" dpkg -r fcgi-milter
check "after remove: the binary is gone" test ! -e /usr/sbin/fcgi-milter
check "after remove: the conffile stays" test -f /etc/fcgi-milter/fcgi-milter.json
check "dpkg -P purges the package" dpkg -P fcgi-milter
check "after purge: dpkg knows no fcgi-milter" \
  test -z "$(dpkg-query -W -f='${Status}' fcgi-milter 2>/dev/null | grep -v not-installed || true)"
left=$(while read -r f; do
  case "$f" in /. | /etc | /etc/php | /etc/php/* | /lib | /lib/* | /usr | /usr/* ) [ -d "$f" ] && continue ;; esac
  [ -e "$f" ] && echo "$f"
done <<< "$installed_files"; true)
left=$(echo "$left"; for f in /etc/fcgi-milter /var/spool/postfix/fcgi-milter /usr/share/fcgi-milter \
  /var/lib/fcgi-milter /etc/php/8.2/fpm/pool.d/fcgi-milter.conf \
  /usr/share/doc/fcgi-milter /etc/systemd/system/multi-user.target.wants/fcgi-milter.service \
  /var/lib/systemd/deb-systemd-helper-enabled/fcgi-milter.service.dsh-also; do
    [ -e "$f" ] && echo "$f"
  done; true)
left=$(echo "$left" | sed '/^$/d')
check "after purge: none of the package's files or directories remain${left:+ (left: $left)}" \
  test -z "$left"
check "after purge: users fcgi-milter and fcgi-milter-php are gone" \
  test -z "$(getent passwd fcgi-milter fcgi-milter-php)"

echo "# $((SECONDS - started)) s, $failures failure(s)"
[ $failures -eq 0 ]
