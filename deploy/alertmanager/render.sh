#!/bin/sh
# Alertmanager's configuration from the environment (.env through docker-compose.yml), then
# Alertmanager itself. Alertmanager reads no environment variables in its configuration, so
# this writes it: one receiver, `default`, with a webhook (ALERT_WEBHOOK_URL, required) and,
# each when its variables are set, Slack, Telegram and e-mail. docs/operations.md#alerts.
#
#   render.sh --render-to FILE   only write the configuration (the tests check it with amtool)
#   render.sh [ARGS...]          write /tmp/alertmanager.yml and run alertmanager ARGS...
set -eu

fail() {
    echo "alertmanager: $*" >&2
    exit 2
}

# A YAML double-quoted string: backslashes and quotes escaped; a line break is refused.
quoted() {
    case "$1" in *"
"*) fail "a value holds a line break" ;; esac
    printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"
}

# All of a receiver's variables, or none of them.
all_or_none() {
    receiver=$1
    shift
    set_count=0
    for name in "$@"; do
        eval "value=\${$name:-}"
        [ -n "$value" ] && set_count=$((set_count + 1))
    done
    [ "$set_count" -eq 0 ] && return 1
    [ "$set_count" -eq "$#" ] && return 0
    for name in "$@"; do
        eval "value=\${$name:-}"
        [ -n "$value" ] || fail "$receiver alerts need $name too (set all of: $*)"
    done
}

render() {
    [ -n "${ALERT_WEBHOOK_URL:-}" ] || fail "ALERT_WEBHOOK_URL is not set: where alerts are POSTed"
    case "$ALERT_WEBHOOK_URL" in
    http://* | https://*) ;;
    *) fail "ALERT_WEBHOOK_URL must be an http:// or https:// URL" ;;
    esac
    cat <<YAML
# Written by deploy/alertmanager/render.sh at start-up; edit .env, not this file.
route:
  receiver: default
  group_by: [alertname, job, instance]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: ${ALERT_REPEAT_INTERVAL:-4h}

# A service that is down or gone explains its other alerts: only it is sent.
inhibit_rules:
  - source_matchers: ['alertname=~"AlgotradeServiceDown|AlgotradeServiceGone"']
    target_matchers: ['alertname!~"AlgotradeServiceDown|AlgotradeServiceGone"']
    equal: [instance]

receivers:
  - name: default
    webhook_configs:
      - url: $(quoted "$ALERT_WEBHOOK_URL")
        send_resolved: true
YAML
    if all_or_none Slack ALERT_SLACK_WEBHOOK_URL ALERT_SLACK_CHANNEL; then
        cat <<YAML
    slack_configs:
      - api_url: $(quoted "$ALERT_SLACK_WEBHOOK_URL")
        channel: $(quoted "$ALERT_SLACK_CHANNEL")
        send_resolved: true
        title: '{{ .Status | toUpper }}: {{ .CommonLabels.alertname }}'
        text: '{{ range .Alerts }}{{ .Annotations.summary }}{{ "\\n" }}{{ end }}'
YAML
    fi
    if all_or_none Telegram ALERT_TELEGRAM_BOT_TOKEN ALERT_TELEGRAM_CHAT_ID; then
        case "$ALERT_TELEGRAM_CHAT_ID" in
        -*[!0-9]* | -) fail "ALERT_TELEGRAM_CHAT_ID must be a number" ;;
        -*) ;;
        *[!0-9]*) fail "ALERT_TELEGRAM_CHAT_ID must be a number" ;;
        esac
        cat <<YAML
    telegram_configs:
      - bot_token: $(quoted "$ALERT_TELEGRAM_BOT_TOKEN")
        chat_id: $ALERT_TELEGRAM_CHAT_ID
        send_resolved: true
YAML
    fi
    if all_or_none E-mail ALERT_EMAIL_TO ALERT_SMTP_SMARTHOST ALERT_SMTP_FROM; then
        cat <<YAML
    email_configs:
      - to: $(quoted "$ALERT_EMAIL_TO")
        from: $(quoted "$ALERT_SMTP_FROM")
        smarthost: $(quoted "$ALERT_SMTP_SMARTHOST")
        auth_username: $(quoted "${ALERT_SMTP_USERNAME:-}")
        auth_password: $(quoted "${ALERT_SMTP_PASSWORD:-}")
        send_resolved: true
YAML
    fi
}

# Rendered whole before anything is written: a refused setting leaves no file behind.
config=$(render) || exit $?
if [ "${1:-}" = "--render-to" ]; then
    [ -n "${2:-}" ] || fail "--render-to needs a file"
    printf '%s\n' "$config" >"$2"
    exit 0
fi
printf '%s\n' "$config" >/tmp/alertmanager.yml
exec /bin/alertmanager --config.file=/tmp/alertmanager.yml --storage.path=/alertmanager "$@"
