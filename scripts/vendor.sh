#!/usr/bin/env bash
# Refresh the page's vendored libraries in static/vendor/ from the npm registry, at the versions
# pinned below. No build step: each package ships a browser-ready file, copied with its licence.
# Usage: bash scripts/vendor.sh   (needs npm; writes static/vendor/ and its README.md)
set -euo pipefail
cd "$(dirname "$0")/.."

MARKED=18.2.1
DOMPURIFY=3.4.18
HIGHLIGHT=11.12.0   # @highlightjs/cdn-assets: the prebuilt browser bundle of highlight.js

dest=static/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

unpack() {  # unpack <package> <version> <folder>: npm pack the tarball and extract it into $work/<folder>
  (cd "$work" && npm pack --silent "$1@$2" >/dev/null)
  mkdir -p "$work/$3"
  tar -xzf "$work"/*"$(basename "$1")-$2.tgz" -C "$work/$3" --strip-components=1
}

unpack marked "$MARKED" marked
unpack dompurify "$DOMPURIFY" dompurify
unpack @highlightjs/cdn-assets "$HIGHLIGHT" hljs

rm -rf "$dest"
mkdir -p "$dest/marked" "$dest/dompurify" "$dest/highlight/styles"
cp "$work/marked/lib/marked.umd.js" "$work/marked/LICENSE" "$dest/marked/"
cp "$work/dompurify/dist/purify.min.js" "$work/dompurify/LICENSE" "$work/dompurify/LICENSE-MPL" "$dest/dompurify/"
cp "$work/hljs/highlight.min.js" "$work/hljs/LICENSE" "$dest/highlight/"
cp "$work/hljs/styles/github.min.css" "$work/hljs/styles/github-dark.min.css" "$dest/highlight/styles/"

cat > "$dest/README.md" <<README
# Vendored browser libraries

Copied from the npm registry by \`scripts/vendor.sh\` (run it again to refresh; versions are pinned
there). Each folder keeps the package's licence file. Do not edit these files by hand.

| package | version | files | licence |
| --- | --- | --- | --- |
| marked | $MARKED | marked/marked.umd.js | MIT (marked/LICENSE) |
| dompurify | $DOMPURIFY | dompurify/purify.min.js | MPL-2.0 or Apache-2.0 (dompurify/LICENSE, dompurify/LICENSE-MPL) |
| @highlightjs/cdn-assets | $HIGHLIGHT | highlight/highlight.min.js (common languages), highlight/styles/github.min.css, highlight/styles/github-dark.min.css | BSD-3-Clause (highlight/LICENSE) |
README
echo "vendored into $dest:"
find "$dest" -type f | sort
