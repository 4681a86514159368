# Sourced by scripts/test, scripts/demo and scripts/bench: make .venv once, install the
# package (editable) with its test extras whenever setup.cfg is newer than the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MESHDROP_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "scripts: creating virtualenv in $VENV" >&2
    "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.meshdrop-installed"
CONSTRAINTS="$ROOT/scripts/test-constraints.txt"  # the test tools' pinned versions
if [ ! -f "$STAMP" ] || [ "$ROOT/setup.cfg" -nt "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ] ||
   [ "$CONSTRAINTS" -nt "$STAMP" ]; then
    echo "scripts: installing meshdrop and its test tools into $VENV" >&2
    LOG="$VENV/pip-install.log"
    if ! { "$VENV/bin/python" -m pip install --disable-pip-version-check --upgrade pip &&
           "$VENV/bin/python" -m pip install --disable-pip-version-check -c "$CONSTRAINTS" -e "$ROOT[test]"; } >"$LOG" 2>&1; then
        tail -n 40 "$LOG" >&2
        echo "scripts: installing failed; the whole log is in $LOG" >&2
        exit 1
    fi
    touch "$STAMP"
fi
# Compiled modules, as an installed package has them: where PYTHONDONTWRITEBYTECODE is set
# (it is on the CI machines) every meshdrop command would otherwise compile the package
# again, about 30 ms each. Only changed files are compiled.
"$VENV/bin/python" -m compileall -q "$ROOT/meshdrop" >/dev/null
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
