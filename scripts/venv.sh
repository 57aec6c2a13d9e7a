# Sourced by the scripts in this folder: ensure_venv DIR REQUIREMENTS creates DIR with Python 3.11
# and installs REQUIREMENTS, again only when it (or a file it includes with -r) changed since it was
# last installed there. Each requirements file has its own stamp, so installing a file also stamps
# the files it includes: after requirements-dev.txt, requirements.txt needs no install of its own.
# Concurrent calls for the same DIR (parallel CI steps or tests) install once.
requirements_hash() {
  local req=$1 files=("$1") include
  while read -r include; do
    files+=("$(dirname "$req")/$include")
  done < <(sed -n 's/^-r[[:space:]]*//p' "$req")
  cat "${files[@]}" | sha256sum | cut -d' ' -f1
}

requirements_stamp() {
  echo "$1/.requirements-$(basename "$2").sha256"
}

requirements_installed() {
  local dir=$1 req=$2
  [ -x "$dir/bin/python" ] && [ "$(cat "$(requirements_stamp "$dir" "$req")" 2>/dev/null)" = "$(requirements_hash "$req")" ]
}

ensure_venv() {
  local dir=$1 req=$2 py=${PYTHON:-}
  requirements_installed "$dir" "$req" && return 0
  if [ -z "$py" ]; then
    for candidate in python3.11 python3; do
      if command -v "$candidate" >/dev/null 2>&1; then py=$candidate; break; fi
    done
  fi
  [ -n "$py" ] || { echo "Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; return 1; }
  local lock
  if command -v flock >/dev/null 2>&1; then
    exec {lock}>"${TMPDIR:-/tmp}/venv-$(realpath -m "$dir" | sha256sum | cut -c1-12).lock"
    flock "$lock"
  fi
  # Another run may have installed while this one waited for the lock.
  if ! requirements_installed "$dir" "$req"; then
    echo "Setting up $dir from $req ..." >&2
    [ -x "$dir/bin/python" ] || "$py" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2
    local include
    for include in "$req" $(sed -n 's/^-r[[:space:]]*//p' "$req" | sed "s|^|$(dirname "$req")/|"); do
      requirements_hash "$include" > "$(requirements_stamp "$dir" "$include")"
    done
  fi
  if [ -n "${lock:-}" ]; then exec {lock}>&-; fi
}
