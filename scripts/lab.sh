# scripts/lab.sh: the throw-away php-fpm + fcgi-milter + Postfix set-up that the shell tools
# share (scripts/run, tests/soak/run). Source it; every function works under `set -euo pipefail`
# and adds the pids it starts to the array LAB_PIDS. lab_stop stops all of it.
# The C++ tests have the same set-up as fixtures (tests/support/mail_lab.h); the facts both
# follow are in docs/platform-notes.md (Postfix without chroot or syslog, php-fpm as www-data).

LAB_PIDS=()
LAB_POSTFIX_DIRS=()

# lab_php_fpm DIR POOL_NAME [POOL LINES...]: php-fpm in the foreground (in the background of this
# shell) with one static pool running as www-data, socket DIR/php-fpm.sock; waits for the socket.
lab_php_fpm() {
  local dir=$1 pool=$2 line _
  shift 2
  mkdir -p "$dir"
  {
    printf '[global]\npid = %s/php-fpm.pid\nerror_log = %s/php-fpm.log\ndaemonize = no\n\n' \
      "$dir" "$dir"
    printf '[%s]\nuser = www-data\ngroup = www-data\nlisten = %s/php-fpm.sock\n' "$pool" "$dir"
    printf 'listen.owner = www-data\nlisten.group = www-data\nlisten.mode = 0660\n'
    printf 'pm = static\ncatch_workers_output = yes\n'
    for line in "$@"; do printf '%s\n' "$line"; done
  } >"$dir/php-fpm.conf"
  /usr/sbin/php-fpm8.2 -F -y "$dir/php-fpm.conf" &
  LAB_PIDS+=($!)
  for _ in $(seq 50); do [ -S "$dir/php-fpm.sock" ] && return 0; sleep 0.1; done
  echo "lab: php-fpm did not open $dir/php-fpm.sock; its log:" >&2
  cat "$dir/php-fpm.log" >&2 || true
  return 1
}

# lab_milter BINARY CONFIG SOCKET [STDERR_FILE]: the daemon in the background, its pid in
# LAB_MILTER_PID; waits for SOCKET.
lab_milter() {
  local binary=$1 config=$2 socket=$3 log=${4:-} _
  if [ -n "$log" ]; then
    "$binary" -c "$config" 2>"$log" &
  else
    "$binary" -c "$config" &
  fi
  LAB_MILTER_PID=$!
  LAB_PIDS+=("$LAB_MILTER_PID")
  for _ in $(seq 50); do [ -S "$socket" ] && return 0; sleep 0.1; done
  echo "lab: fcgi-milter did not open $socket" >&2
  return 1
}

# lab_postfix DIR PORT MILTERS [MAIN.CF LINES...]: a private Postfix on 127.0.0.1:PORT that
# accepts mail for any domain from 127.0.0.0/8, asks the milters (Postfix syntax), and discards
# what it accepts (the save script is the delivery). Config, queue and log under DIR; chroot off.
lab_postfix() {
  local dir=$1 port=$2 milters=$3 line _
  shift 3
  if [ -f "$dir/etc/main.cf" ]; then postfix -c "$dir/etc" stop >/dev/null 2>&1 || true; fi
  mkdir -p "$dir/etc" "$dir/queue"
  install -d -o postfix -g postfix -m 700 "$dir/data"
  awk -v port="$port" '
    /^#/ || /^$/ { print; next }
    /^[ \t]/ { if (!skip) print; next }
    { skip = 0
      if ($2 == "inet") { if ($1 != "smtp" || done) { skip = 1; next } $1 = "127.0.0.1:" port; done = 1 }
      $5 = "n"; print }
  ' /etc/postfix/master.cf >"$dir/etc/master.cf"
  grep -q '^postlog' "$dir/etc/master.cf" ||
    echo "postlog unix-dgram n - n - 1 postlogd" >>"$dir/etc/master.cf"
  {
    printf '%s\n' "compatibility_level = 3.6" "queue_directory = $dir/queue" \
      "data_directory = $dir/data" "maillog_file = $dir/maillog" \
      "maillog_file_prefixes = $dir" "inet_interfaces = 127.0.0.1" "inet_protocols = ipv4" \
      "myhostname = mx.example.test" "mynetworks = 127.0.0.0/8" \
      "smtpd_relay_restrictions = permit_mynetworks, reject" "mydestination =" \
      "relay_domains =" "local_recipient_maps =" "alias_maps =" "alias_database =" \
      "default_transport = discard" "local_transport = discard" "relay_transport = discard" \
      "smtputf8_enable = no" "smtpd_milters = $milters" "milter_default_action = tempfail"
    for line in "$@"; do printf '%s\n' "$line"; done
  } >"$dir/etc/main.cf"
  LAB_POSTFIX_DIRS+=("$dir")
  # No syslog here: under `script` Postfix's fatal errors reach us instead of vanishing.
  if ! script -qec "postfix -c $dir/etc start" /dev/null >/dev/null; then
    echo "lab: Postfix did not start; its log:" >&2
    cat "$dir/maillog" >&2 || true
    return 1
  fi
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0; sleep 0.1; done
  echo "lab: Postfix does not answer on 127.0.0.1:$port" >&2
  return 1
}

# lab_stop: Postfix instances first (they talk to the milter), then every process started.
lab_stop() {
  local d pid
  for d in "${LAB_POSTFIX_DIRS[@]}"; do postfix -c "$d/etc" stop >/dev/null 2>&1 || true; done
  for pid in "${LAB_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
