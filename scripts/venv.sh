# Sourced by the scripts in this folder: ensure_venv DIR REQUIREMENTS creates DIR with Python 3.11
# and installs REQUIREMENTS, again only when the requirements file changed since the last install.
ensure_venv() {
  local dir=$1 req=$2 py=${PYTHON:-}
  if [ -z "$py" ]; then
    for candidate in python3.11 python3; do
      if command -v "$candidate" >/dev/null 2>&1; then py=$candidate; break; fi
    done
  fi
  [ -n "$py" ] || { echo "Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; return 1; }
  local stamp="$dir/.requirements.sha256" want
  want=$(cat "$req" requirements.txt 2>/dev/null | sha256sum | cut -d' ' -f1)
  if [ -x "$dir/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  echo "Setting up $dir from $req ..." >&2
  [ -x "$dir/bin/python" ] || "$py" -m venv "$dir"
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
}
