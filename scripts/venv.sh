# Sourced by the scripts in this folder: ensure_venv DIR REQUIREMENTS creates DIR with Python 3.11
# and installs REQUIREMENTS, again only when it (or a file it includes with -r) changed since the
# last install. Concurrent calls for the same DIR (parallel CI steps or tests) install once.
ensure_venv() {
  local dir=$1 req=$2 py=${PYTHON:-}
  if [ -z "$py" ]; then
    for candidate in python3.11 python3; do
      if command -v "$candidate" >/dev/null 2>&1; then py=$candidate; break; fi
    done
  fi
  [ -n "$py" ] || { echo "Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; return 1; }
  local files=("$req") include
  while read -r include; do
    files+=("$(dirname "$req")/$include")
  done < <(sed -n 's/^-r[[:space:]]*//p' "$req")
  local stamp="$dir/.requirements.sha256" want
  want=$(cat "${files[@]}" | sha256sum | cut -d' ' -f1)
  [ -x "$dir/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  local lock
  if command -v flock >/dev/null 2>&1; then
    exec {lock}>"${TMPDIR:-/tmp}/venv-$(realpath -m "$dir" | sha256sum | cut -c1-12).lock"
    flock "$lock"
  fi
  # Another run may have installed while this one waited for the lock.
  if ! { [ -x "$dir/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; }; then
    echo "Setting up $dir from $req ..." >&2
    [ -x "$dir/bin/python" ] || "$py" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2
    echo "$want" > "$stamp"
  fi
  if [ -n "${lock:-}" ]; then exec {lock}>&-; fi
}
