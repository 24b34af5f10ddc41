#!/usr/bin/env bash
# Local copies of the scripts the course pages load from CDNs (MathJax, require.js, jQuery, the ipywidgets
# HTML manager), for tests/test_site.py's browser check on machines that cannot reach the CDNs.
# Usage: tools/fetch_site_cdn.sh [DEST]   (default: $SITE_CDN_CACHE or ~/.cache/vae_course/site-cdn)
# Needs npm (the npm registry). Idempotent: a finished folder is reused. Prints the folder.
set -euo pipefail
DEST=${1:-${SITE_CDN_CACHE:-$HOME/.cache/vae_course/site-cdn}}
PKGS=("mathjax@3.2.2" "requirejs@2.3.6" "jquery@3.5.1" "@jupyter-widgets/html-manager@1.0.15")
mkdir -p "$DEST"; DEST=$(cd "$DEST" && pwd)
if [ -f "$DEST/.done" ] && [ "$(cat "$DEST/.done")" = "${PKGS[*]}" ]; then echo "$DEST"; exit 0; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
( cd "$tmp" && npm pack --silent "${PKGS[@]}" >/dev/null )
for spec in "${PKGS[@]}"; do
  name=${spec%@*}                                  # mathjax, @jupyter-widgets/html-manager
  tgz=$(ls "$tmp"/"$(echo "${name#@}" | tr / -)"-*.tgz)
  rm -rf "${DEST:?}/$name"; mkdir -p "$DEST/$name"
  tar -xzf "$tgz" -C "$DEST/$name" --strip-components=1
done
echo "${PKGS[*]}" > "$DEST/.done"
echo "$DEST"
