# Shared set-up for scripts/demo, scripts/docs and scripts/test: a local virtual environment with the
# package and its test extras, and the `dot` program where it can be installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v dot >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing graphviz (the dot program) for drawings ..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null) \
      || echo "warning: could not install graphviz; drawings will be written as .dot source files"
  else
    echo "note: the dot program is missing; drawings will be written as .dot source files." \
         "Install Graphviz (Debian/Ubuntu: sudo apt-get install graphviz) to get pictures."
  fi
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ setup.cfg -nt .venv/.installed ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  touch .venv/.installed
fi
