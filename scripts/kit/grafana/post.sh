# shellcheck shell=bash
set -eu
mkdir -p /etc/grafana/provisioning /etc/grafana/dashboards /var/lib/grafana /usr/share/grafana
chown -R 472:0 /var/lib/grafana /usr/share/grafana
chmod 0755 /usr/share/grafana-standin/grafana_standin.py
python3 -m py_compile /usr/share/grafana-standin/grafana_standin.py
rm -rf /usr/share/grafana-standin/__pycache__
