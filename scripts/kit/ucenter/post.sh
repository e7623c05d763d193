# shellcheck shell=bash
set -eu
mkdir -p /app/config /app/logs
chown 1000:1000 /app /app/logs
chmod 0755 /opt/standin-app/standin_app.py /opt/standin-app/kafka_roundtrip.py
ln -sf /opt/standin-app/kafka_roundtrip.py /usr/local/bin/kafka-roundtrip
python3 -c 'import pymysql, kafka, yaml'
python3 -m py_compile /opt/standin-app/standin_app.py
rm -rf /opt/standin-app/__pycache__
