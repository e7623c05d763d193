# runs inside the base chroot after the common packages are installed
set -eu
rm -rf /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/*
find /usr/lib/python3* -name __pycache__ -prune -exec rm -rf {} + 2>/dev/null || true
