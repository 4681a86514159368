#!/bin/sh
# Rebuild meshdrop/reader/static/seal.js (the write page's sealing in the browser) and
# its license file from scripts/sealjs/: pinned versions (package.json, package-lock.json),
# installed with `npm ci` in a temporary folder, so node_modules never enters the repo.
# Only this script needs npm; the test suite uses the committed seal.js.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$repo/scripts/sealjs/package.json" "$repo/scripts/sealjs/package-lock.json" \
    "$repo/scripts/sealjs/seal_entry.js" "$work/"
cd "$work"
npm ci --no-audit --no-fund --ignore-scripts
./node_modules/.bin/esbuild seal_entry.js --bundle --minify --format=iife \
    --target=es2020 --legal-comments=none --charset=utf8 \
    --outfile="$repo/meshdrop/reader/static/seal.js"
{
    echo "Licenses of the code bundled into seal.js (built by scripts/build_seal_js.sh)."
    for package in @hpke/core @hpke/common @hpke/dhkem-x25519 @hpke/hybridkem-x-wing \
        mlkem @noble/hashes @noble/ciphers; do
        version=$(node -p "require('./node_modules/$package/package.json').version")
        echo
        echo "================================================================"
        echo "$package $version"
        echo "================================================================"
        cat "node_modules/$package/LICENSE"
    done
} > "$repo/meshdrop/reader/static/seal.js.LICENSES.txt"
