#!/usr/bin/env bash
# Installs (if missing) and runs the services Weir's integration tests talk to: Redis and
# ClickHouse, on 127.0.0.1 only, on fixed non-default ports, with their data in a temp dir.
#
#   bash scripts/services.sh start    # install if needed, start, wait until both answer
#   bash scripts/services.sh stop     # stop what `start` started
#   bash scripts/services.sh status   # exit 0 when both answer
#   bash scripts/services.sh clean    # stop, then delete the data directory
#
# Idempotent: `start` with both services already answering does nothing but print the URLs.
# Overrides: WEIR_SERVICES_DIR (default /tmp/weir-services), WEIR_REDIS_PORT (6390),
# WEIR_CLICKHOUSE_HTTP_PORT (8124), WEIR_CLICKHOUSE_TCP_PORT (9001).
# Tests find the services through WEIR_TEST_REDIS_URL and WEIR_TEST_CLICKHOUSE_URL; their
# defaults match the ports above.
set -euo pipefail

DIR="${WEIR_SERVICES_DIR:-/tmp/weir-services}"
REDIS_PORT="${WEIR_REDIS_PORT:-6390}"
CH_HTTP_PORT="${WEIR_CLICKHOUSE_HTTP_PORT:-8124}"
CH_TCP_PORT="${WEIR_CLICKHOUSE_TCP_PORT:-9001}"
HOST=127.0.0.1
REDIS_URL="redis://$HOST:$REDIS_PORT"
CH_URL="http://$HOST:$CH_HTTP_PORT"
WAIT_SECONDS="${WEIR_SERVICES_WAIT_SECONDS:-60}"

die() {
    echo "services.sh: error: $*" >&2
    exit 1
}

log() {
    echo "services.sh: $*"
}

# ---------------------------------------------------------------------------------------------
# Installation

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* by hand"
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        as_root apt-get update -qq || die "apt-get update failed"
        APT_UPDATED=1
    fi
    log "apt-get install -y $*"
    # The packages try to start their system services; in containers policy-rc.d refuses,
    # which is fine: we start our own instances below.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >"$DIR/apt.log" 2>&1 \
        || { tail -n 20 "$DIR/apt.log" >&2; die "apt-get install $* failed (log: $DIR/apt.log)"; }
}

install_missing() {
    local missing=()
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
    command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/sbin/clickhouse-server ] \
        || missing+=(clickhouse-server)
    command -v clickhouse-client >/dev/null 2>&1 || missing+=(clickhouse-client)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
}

clickhouse_server_bin() {
    if command -v clickhouse-server >/dev/null 2>&1; then
        command -v clickhouse-server
    else
        echo /usr/sbin/clickhouse-server
    fi
}

# ---------------------------------------------------------------------------------------------
# Health checks

redis_up() {
    command -v redis-cli >/dev/null 2>&1 || return 1
    # `timeout`: something else on the port may never answer in Redis's protocol.
    [ "$(timeout 2 redis-cli -h "$HOST" -p "$REDIS_PORT" PING 2>/dev/null)" = "PONG" ]
}

clickhouse_up() {
    [ "$(curl -fsS --max-time 2 "$CH_URL/ping" 2>/dev/null)" = "Ok." ]
}

# wait_for NAME CHECK_FUNCTION PID LOGFILE...: until CHECK_FUNCTION succeeds; fails at once
# when the server process exits (port taken, bad config, ...).
wait_for() {
    local name="$1" check="$2" pid="$3" i f
    shift 3
    for ((i = 0; i < WAIT_SECONDS * 10; i++)); do
        if "$check"; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "services.sh: $name (pid $pid) exited during start-up; last log lines:" >&2
            for f in "$@"; do tail -n 30 "$f" >&2 2>/dev/null || true; done
            die "$name failed to start"
        fi
        sleep 0.1
    done
    echo "services.sh: $name did not answer within ${WAIT_SECONDS}s; last log lines:" >&2
    for f in "$@"; do tail -n 30 "$f" >&2 2>/dev/null || true; done
    die "$name failed to start"
}

# start_background PIDFILE LOGFILE COMMAND...: runs COMMAND detached from this shell.
start_background() {
    local pidfile="$1" logfile="$2"
    shift 2
    setsid nohup "$@" >"$logfile" 2>&1 </dev/null &
    echo $! >"$pidfile"
}

# ---------------------------------------------------------------------------------------------
# Redis

start_redis() {
    if redis_up; then
        log "Redis already running at $REDIS_URL"
        return
    fi
    mkdir -p "$DIR/redis"
    start_background "$DIR/redis.pid" "$DIR/redis.log" \
        redis-server --bind "$HOST" --port "$REDIS_PORT" --dir "$DIR/redis" \
        --save "" --appendonly no --protected-mode yes --daemonize no
    wait_for Redis redis_up "$(cat "$DIR/redis.pid")" "$DIR/redis.log"
    log "Redis started at $REDIS_URL"
}

stop_redis() {
    if redis_up; then
        redis-cli -h "$HOST" -p "$REDIS_PORT" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
        local i
        for ((i = 0; i < 100; i++)); do
            redis_up || break
            sleep 0.1
        done
        redis_up && die "Redis at $REDIS_URL did not stop"
        log "Redis stopped"
    else
        log "Redis not running"
    fi
    rm -f "$DIR/redis.pid"
}

# ---------------------------------------------------------------------------------------------
# ClickHouse

write_clickhouse_config() {
    local ch="$DIR/clickhouse"
    mkdir -p "$ch/data" "$ch/tmp" "$ch/user_files" "$ch/format_schemas" "$ch/log"
    cat >"$ch/config.xml" <<EOF
<?xml version="1.0"?>
<!-- Written by scripts/services.sh: a throwaway ClickHouse for Weir's tests. -->
<yandex>
    <logger>
        <level>information</level>
        <log>$ch/log/clickhouse-server.log</log>
        <errorlog>$ch/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <listen_host>$HOST</listen_host>
    <http_port>$CH_HTTP_PORT</http_port>
    <tcp_port>$CH_TCP_PORT</tcp_port>
    <path>$ch/data/</path>
    <tmp_path>$ch/tmp/</tmp_path>
    <user_files_path>$ch/user_files/</user_files_path>
    <format_schema_path>$ch/format_schemas/</format_schema_path>
    <users_config>$ch/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
</yandex>
EOF
    cat >"$ch/users.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
}

start_clickhouse() {
    if clickhouse_up; then
        log "ClickHouse already running at $CH_URL"
        return
    fi
    write_clickhouse_config
    local ch="$DIR/clickhouse" bin
    bin="$(clickhouse_server_bin)"
    # Detached (setsid + nohup): the server outlives this script and the shell that ran it.
    (cd "$ch" && start_background "$DIR/clickhouse.pid" "$ch/log/stdout.log" \
        "$bin" --config-file="$ch/config.xml")
    wait_for ClickHouse clickhouse_up "$(cat "$DIR/clickhouse.pid")" \
        "$ch/log/stdout.log" "$ch/log/clickhouse-server.err.log"
    log "ClickHouse started at $CH_URL (native TCP $HOST:$CH_TCP_PORT)"
}

stop_clickhouse() {
    local pidfile="$DIR/clickhouse.pid" pid=""
    [ -f "$pidfile" ] && pid="$(cat "$pidfile")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        local i
        for ((i = 0; i < 300; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "ClickHouse (pid $pid) ignored SIGTERM for 30s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        log "ClickHouse stopped"
    elif clickhouse_up; then
        die "ClickHouse answers at $CH_URL but was not started by this script (no live pid in $pidfile)"
    else
        log "ClickHouse not running"
    fi
    rm -f "$pidfile"
}

# ---------------------------------------------------------------------------------------------

print_urls() {
    echo "WEIR_TEST_REDIS_URL=$REDIS_URL"
    echo "WEIR_TEST_CLICKHOUSE_URL=$CH_URL"
}

main() {
    local cmd="${1:-}"
    case "$cmd" in
    start)
        mkdir -p "$DIR"
        install_missing
        start_redis
        start_clickhouse
        print_urls
        ;;
    stop)
        mkdir -p "$DIR"
        stop_redis
        stop_clickhouse
        ;;
    clean)
        mkdir -p "$DIR"
        stop_redis
        stop_clickhouse
        rm -rf "$DIR"
        log "removed $DIR"
        ;;
    status)
        local ok=0
        if redis_up; then log "Redis up at $REDIS_URL"; else log "Redis down at $REDIS_URL"; ok=1; fi
        if clickhouse_up; then log "ClickHouse up at $CH_URL"; else log "ClickHouse down at $CH_URL"; ok=1; fi
        return "$ok"
        ;;
    *)
        echo "usage: $0 start|stop|status|clean" >&2
        exit 2
        ;;
    esac
}

main "$@"
