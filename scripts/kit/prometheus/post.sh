# shellcheck shell=bash
set -eu
mkdir -p /prometheus /etc/prometheus
chown nobody:nogroup /prometheus
test -f /etc/prometheus/prometheus.yml
rm -rf /etc/default/prometheus /etc/init.d/prometheus
# moment-timezone's raw tz data (212 MB) is not used by the web UI, which loads only
# moment-timezone-with-data.min.js
rm -rf /usr/share/javascript/moment-timezone/data
