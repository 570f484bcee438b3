# shellcheck shell=bash
# scripts/lab.sh: the throw-away php-fpm + fcgi-milter + Postfix set-up that the shell tools
# share (scripts/run, tests/soak/run, and bench/run, which calls these functions one at a time
# through `bash -c '. scripts/lab.sh; FUNCTION ARGS'`). Source it; every function works under
# `set -euo pipefail` and adds the pids it starts to the array LAB_PIDS. lab_stop stops all of it.
# The C++ tests have the same set-up as fixtures (tests/support/mail_lab.h); the facts both
# follow are in docs/platform-notes.md (Postfix without chroot or syslog, php-fpm as www-data).

LAB_PIDS=()
LAB_POSTFIX_DIRS=()
LAB_PHP_FPM=${LAB_PHP_FPM:-/usr/sbin/php-fpm8.2}

# lab_listening ADDRESS: true when ADDRESS accepts connections now. ADDRESS is a unix socket path
# (starting with /; the socket file exists) or HOST:PORT (a TCP connection succeeds).
lab_listening() {
  case $1 in
    /*) [ -S "$1" ] ;;
    *) (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null ;;
  esac
}

# lab_wait_listen ADDRESS...: waits until every ADDRESS (as for lab_listening) answers, for at
# most LAB_WAIT_SECONDS (integer, default 5) in all, looking every LAB_WAIT_STEP seconds (0.1).
# When LAB_WAIT_PID is set, gives up as soon as that process is gone (the daemon died at start).
lab_wait_listen() {
  local addr now end=$((${EPOCHREALTIME/./} + ${LAB_WAIT_SECONDS:-5} * 1000000))
  for addr in "$@"; do
    until lab_listening "$addr"; do
      if [ -n "${LAB_WAIT_PID:-}" ] && ! kill -0 "$LAB_WAIT_PID" 2>/dev/null; then
        echo "lab: process $LAB_WAIT_PID exited before $addr answered" >&2
        return 1
      fi
      now=${EPOCHREALTIME/./}
      if [ "$now" -ge "$end" ]; then
        echo "lab: nothing answers on $addr after ${LAB_WAIT_SECONDS:-5} s" >&2
        return 1
      fi
      sleep "${LAB_WAIT_STEP:-0.1}"
    done
  done
}

# lab_php_fpm_config DIR: starts DIR/php-fpm.conf with its [global] section (pid and error_log
# in DIR, in the foreground); lab_php_fpm_pool adds the pools.
lab_php_fpm_config() {
  local dir=$1
  mkdir -p "$dir"
  printf '[global]\npid = %s/php-fpm.pid\nerror_log = %s/php-fpm.log\ndaemonize = no\n\n' \
    "$dir" "$dir" >"$dir/php-fpm.conf"
}

# lab_php_fpm_pool DIR POOL_NAME SOCKET [POOL LINES...]: appends to DIR/php-fpm.conf one static
# pool running as www-data and listening on SOCKET; the lines follow the pool's defaults
# (`pm.max_children = 4`, `env[X] = …`, `php_admin_value[…] = …`).
lab_php_fpm_pool() {
  local dir=$1 pool=$2 socket=$3 line
  shift 3
  {
    printf '[%s]\nuser = www-data\ngroup = www-data\nlisten = %s\n' "$pool" "$socket"
    printf 'listen.owner = www-data\nlisten.group = www-data\nlisten.mode = 0660\n'
    printf 'pm = static\ncatch_workers_output = yes\n'
    for line in "$@"; do printf '%s\n' "$line"; done
  } >>"$dir/php-fpm.conf"
}

# lab_php_fpm_start DIR SOCKET...: php-fpm with DIR/php-fpm.conf in the foreground (in the
# background of this shell), its pid in LAB_PHP_FPM_PID; waits for every SOCKET.
lab_php_fpm_start() {
  local dir=$1
  shift
  "$LAB_PHP_FPM" -F -y "$dir/php-fpm.conf" &
  LAB_PHP_FPM_PID=$!
  LAB_PIDS+=("$LAB_PHP_FPM_PID")
  LAB_WAIT_PID=$LAB_PHP_FPM_PID lab_wait_listen "$@" && return 0
  echo "lab: php-fpm did not open $*; its log:" >&2
  cat "$dir/php-fpm.log" >&2 || true
  return 1
}

# lab_php_fpm_exec DIR: replaces the shell with php-fpm (DIR/php-fpm.conf, in the foreground),
# for a caller that keeps the process as its own child (bench/run); wait with lab_wait_listen.
lab_php_fpm_exec() {
  exec "$LAB_PHP_FPM" -F -y "$1/php-fpm.conf"
}

# lab_php_fpm DIR POOL_NAME [POOL LINES...]: php-fpm in the foreground (in the background of this
# shell) with one static pool running as www-data, socket DIR/php-fpm.sock; waits for the socket.
lab_php_fpm() {
  local dir=$1 pool=$2
  shift 2
  lab_php_fpm_config "$dir"
  lab_php_fpm_pool "$dir" "$pool" "$dir/php-fpm.sock" "$@"
  lab_php_fpm_start "$dir" "$dir/php-fpm.sock"
}

# lab_milter BINARY CONFIG SOCKET [STDERR_FILE]: the daemon in the background, its pid in
# LAB_MILTER_PID; waits for SOCKET.
lab_milter() {
  local binary=$1 config=$2 socket=$3 log=${4:-}
  if [ -n "$log" ]; then
    "$binary" -c "$config" 2>"$log" &
  else
    "$binary" -c "$config" &
  fi
  LAB_MILTER_PID=$!
  LAB_PIDS+=("$LAB_MILTER_PID")
  LAB_WAIT_PID=$LAB_MILTER_PID lab_wait_listen "$socket" && return 0
  echo "lab: fcgi-milter did not open $socket" >&2
  return 1
}

# lab_postfix_config DIR PORT MILTERS [MAIN.CF LINES...]: writes DIR/etc/main.cf and master.cf
# of a private Postfix on 127.0.0.1:PORT that accepts mail for any domain from 127.0.0.0/8, asks
# the milters (Postfix syntax), and discards what it accepts (the save script is the delivery).
# Queue, data and log under DIR; chroot off. A line `key = value` replaces the default of that
# key (`message_size_limit = 0`, `default_transport = php`), others are added. Stops an instance
# a previous run left in DIR.
lab_postfix_config() {
  local dir=$1 port=$2 milters=$3 line key
  local -A given=()
  shift 3
  if [ -f "$dir/etc/main.cf" ]; then lab_postfix_stop "$dir"; fi
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
  for line in "$@"; do
    read -r key _ <<<"${line%%=*}"
    given[$key]=1
  done
  {
    for line in "compatibility_level = 3.6" "queue_directory = $dir/queue" \
      "data_directory = $dir/data" "maillog_file = $dir/maillog" \
      "maillog_file_prefixes = $dir" "inet_interfaces = 127.0.0.1" "inet_protocols = ipv4" \
      "myhostname = mx.example.test" "mynetworks = 127.0.0.0/8" \
      "smtpd_relay_restrictions = permit_mynetworks, reject" "mydestination =" \
      "relay_domains =" "local_recipient_maps =" "alias_maps =" "alias_database =" \
      "default_transport = discard" "local_transport = discard" "relay_transport = discard" \
      "smtputf8_enable = no" "smtpd_milters = $milters" "milter_default_action = tempfail"; do
      read -r key _ <<<"${line%%=*}"
      # Postfix takes the last of two settings but warns about the first: leave it out.
      [ -n "${given[$key]:-}" ] || printf '%s\n' "$line"
    done
    for line in "$@"; do printf '%s\n' "$line"; done
  } >"$dir/etc/main.cf"
}

# lab_postfix_master DIR [MASTER.CF LINES...]: appends services to DIR/etc/master.cf (after
# lab_postfix_config, before lab_postfix_start), e.g. a pipe(8) transport.
lab_postfix_master() {
  local dir=$1
  shift
  printf '%s\n' "$@" >>"$dir/etc/master.cf"
}

# lab_postfix_start DIR PORT: starts the instance configured in DIR and waits until
# 127.0.0.1:PORT accepts connections.
lab_postfix_start() {
  local dir=$1 port=$2
  LAB_POSTFIX_DIRS+=("$dir")
  # No syslog here: under `script` Postfix's fatal errors reach us instead of vanishing.
  if ! script -qec "postfix -c $dir/etc start" /dev/null >/dev/null; then
    echo "lab: Postfix did not start; its log:" >&2
    cat "$dir/maillog" >&2 || true
    return 1
  fi
  lab_wait_listen "127.0.0.1:$port" && return 0
  echo "lab: Postfix does not answer on 127.0.0.1:$port" >&2
  return 1
}

# lab_postfix DIR PORT MILTERS [MAIN.CF LINES...]: lab_postfix_config, then lab_postfix_start.
lab_postfix() {
  lab_postfix_config "$@"
  lab_postfix_start "$1" "$2"
}

# lab_postfix_stop DIR: `postfix stop` for the instance in DIR (quiet when it is not running).
lab_postfix_stop() {
  postfix -c "$1/etc" stop >/dev/null 2>&1 || true
}

# lab_stop: Postfix instances first (they talk to the milter), then every process started.
lab_stop() {
  local d pid
  for d in "${LAB_POSTFIX_DIRS[@]}"; do lab_postfix_stop "$d"; done
  for pid in "${LAB_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
