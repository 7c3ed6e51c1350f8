#!/usr/bin/env bash
# clang-format over every C++ file in the repository (.clang-format: Google style, 100 columns).
#   scripts/format.sh          check: lists each file whose formatting differs, exits 1 if any
#   scripts/format.sh --fix    rewrites them in place
# The whole tree was formatted once, so checking every file checks every changed line; CI runs the
# check before building (scripts/test.sh). Debian 12's clang-format-14 is the reference.
set -euo pipefail
cd "$(dirname "$0")/.."
fmt=$(command -v clang-format-14 || command -v clang-format || true)
[ -n "$fmt" ] || { echo "format: clang-format-14 is not installed (scripts/deps.sh installs it)" >&2; exit 1; }
mapfile -t files < <(git ls-files '*.cpp' '*.h' '*.hpp' '*.cc')
if [ "${1:-}" = "--fix" ]; then
  "$fmt" -i "${files[@]}"
  exit 0
fi
if ! out=$("$fmt" --dry-run --Werror "${files[@]}" 2>&1); then
  echo "format: these lines differ from clang-format (scripts/format.sh --fix rewrites them):" >&2
  grep -E '^[^ ].*: (error|warning):' <<<"$out" | head -50 >&2
  exit 1
fi
echo "format: ${#files[@]} files formatted"
