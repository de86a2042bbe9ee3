#!/usr/bin/env bash
# Makes sure the servers ktwin's tests talk to are installed and running on loopback:
# PostgreSQL 5432 (trust auth for 127.0.0.1), RabbitMQ 5672 (guest/guest) with its MQTT plugin
# listening on 1884 (1883 belongs to Mosquitto), and Mosquitto 1883; and Debian's Chromium and
# ChromeDriver for the dashboard's browser tests.
# Idempotent: on a machine where everything already runs it only checks.
set -euo pipefail

log() { printf '[services] %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port name seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    port_open "$1" && return 0
    sleep 0.1
  done
  log "$2 is not listening on 127.0.0.1:$1 after $3 s"
  return 1
}

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_updated=""
install_pkgs() {
  if [ -z "$apt_updated" ]; then
    log "apt-get update"
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  command -v pg_ctlcluster >/dev/null || install_pkgs postgresql
  if ! port_open 5432; then
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    log "starting PostgreSQL $version"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start
    wait_port 5432 PostgreSQL 30
  fi
  if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
    # A fresh Debian install asks for passwords on TCP; the tests use trust auth on loopback.
    local hba
    hba=$(ls /etc/postgresql/*/main/pg_hba.conf | sort -V | tail -n 1)
    log "enabling trust auth for 127.0.0.1 in $hba"
    $SUDO sed -i '1i host all all 127.0.0.1/32 trust\nlocal all all trust' "$hba"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main reload
    sleep 1
    psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null
  fi
}

ensure_rabbitmq() {
  command -v rabbitmq-server >/dev/null || install_pkgs rabbitmq-server
  local conf=/etc/rabbitmq/rabbitmq.conf restart=""
  if ! grep -q '^mqtt.listeners.tcp.default' "$conf" 2>/dev/null; then
    log "configuring RabbitMQ's MQTT listener on 127.0.0.1:1884"
    printf 'mqtt.listeners.tcp.default = 127.0.0.1:1884\nmqtt.allow_anonymous = true\nmqtt.exchange = amq.topic\n' | $SUDO tee -a "$conf" >/dev/null
    restart=1
  fi
  if ! grep -q rabbitmq_mqtt /etc/rabbitmq/enabled_plugins 2>/dev/null; then
    log "enabling the rabbitmq_mqtt plugin"
    $SUDO rabbitmq-plugins enable --offline rabbitmq_mqtt >/dev/null
    restart=1
  fi
  if [ -n "$restart" ] && port_open 5672; then
    log "restarting RabbitMQ to apply its configuration"
    $SUDO rabbitmqctl stop >/dev/null 2>&1 || true
    for _ in $(seq 1 100); do port_open 5672 || break; sleep 0.2; done
  fi
  if ! port_open 5672; then
    log "starting RabbitMQ"
    $SUDO rabbitmq-server -detached
  fi
  wait_port 5672 RabbitMQ 90
  $SUDO rabbitmqctl await_startup >/dev/null 2>&1 || true
  wait_port 1884 "RabbitMQ MQTT plugin" 60
}

# Mosquitto's defaults (20 QoS 1 messages in flight per client, then 1000 queued, then silently
# dropped) lose bursts to subscribers that acknowledge only once an event is confirmed
# downstream, as the MQTT dispatcher does; these limits keep a 50,000-message burst intact.
MOSQUITTO_SETTINGS='# Written by ktwin scripts/services.sh: QoS 1 bursts must not be dropped.
max_inflight_messages 1000
max_queued_messages 1000000
max_queued_bytes 0
set_tcp_nodelay true'

MOSQUITTO_CONF=/etc/mosquitto/mosquitto.conf
MOSQUITTO_CONF_DIR=/etc/mosquitto/conf.d
mosquitto_config_changed=""

# Writes the ktwin settings into Mosquitto's conf.d, and makes mosquitto.conf include conf.d
# (Debian's does; a hand-written one may not).
configure_mosquitto() {
  local file="$MOSQUITTO_CONF_DIR/ktwin.conf"
  $SUDO mkdir -p "$MOSQUITTO_CONF_DIR"
  if [ -f "$MOSQUITTO_CONF" ] && ! grep -qx "include_dir $MOSQUITTO_CONF_DIR" "$MOSQUITTO_CONF"; then
    log "making $MOSQUITTO_CONF include $MOSQUITTO_CONF_DIR"
    printf 'include_dir %s\n' "$MOSQUITTO_CONF_DIR" | $SUDO tee -a "$MOSQUITTO_CONF" >/dev/null
    mosquitto_config_changed=1
  fi
  if [ "$(cat "$file" 2>/dev/null)" != "$MOSQUITTO_SETTINGS" ]; then
    log "writing Mosquitto limits to $file"
    printf '%s\n' "$MOSQUITTO_SETTINGS" | $SUDO tee "$file" >/dev/null
    mosquitto_config_changed=1
  fi
}

# Mosquitto 2.0 reads these limits on a reload signal (SIGHUP), but clients then still see the
# old ones (measured: a 50,000-message burst was still dropped), so a running Mosquitto is
# restarted. Persistent sessions survive (persistence is on in Debian's configuration).
restart_mosquitto() {
  local pid_file=/run/mosquitto/mosquitto.pid pid
  if command -v systemctl >/dev/null && systemctl is-active --quiet mosquitto 2>/dev/null; then
    log "restarting Mosquitto to apply its configuration (systemd)"
    $SUDO systemctl restart mosquitto
  elif [ -s "$pid_file" ] && pid=$(cat "$pid_file") && $SUDO kill -0 "$pid" 2>/dev/null; then
    log "restarting Mosquitto (pid $pid) to apply its configuration"
    $SUDO kill "$pid"
    for _ in $(seq 1 100); do $SUDO kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    start_mosquitto
  else
    # Not ours to restart (a container, say): it still serves, with its old limits.
    log "Mosquitto on :1883 has no pid file; restart it yourself to apply $MOSQUITTO_CONF_DIR/ktwin.conf"
    return 0
  fi
  wait_port 1883 Mosquitto 20
}

start_mosquitto() {
  log "starting Mosquitto"
  if [ -f "$MOSQUITTO_CONF" ]; then
    $SUDO mosquitto -d -c "$MOSQUITTO_CONF"
  else
    # No listener configured: Mosquitto listens on loopback 1883 only, anonymous allowed.
    $SUDO mosquitto -d -c "$MOSQUITTO_CONF_DIR/ktwin.conf"
  fi
  wait_port 1883 Mosquitto 20
}

ensure_mosquitto() {
  command -v mosquitto >/dev/null || install_pkgs mosquitto
  configure_mosquitto
  if ! port_open 1883; then
    start_mosquitto
  elif [ -n "$mosquitto_config_changed" ]; then
    restart_mosquitto
  fi
}

# The dashboard's browser tests drive Debian's Chromium; nothing may download a browser build.
ensure_chromium() {
  command -v chromium >/dev/null && command -v chromedriver >/dev/null || install_pkgs chromium chromium-driver
}

ensure_postgres
ensure_rabbitmq
ensure_mosquitto
ensure_chromium
log "PostgreSQL :5432, RabbitMQ :5672 (MQTT :1884), Mosquitto :1883 are up; Chromium is installed"
