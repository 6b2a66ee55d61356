#!/bin/sh
# Copies the few files the pages use from the pinned npm packages (package.json +
# package-lock.json) into public/vendor/, with each package's LICENSE. The output is checked
# in: the gateway embeds public/ into the binary (rust-embed), so `cargo build` needs no node
# and the wall screen needs no internet. Run it again after changing a version, then commit
# public/vendor/ and public/countries.json.
#
#   sh dashboards/web/vendor.sh
set -eu
cd "$(dirname "$0")"

npm ci --no-audit --no-fund --ignore-scripts

out=public/vendor
rm -rf "$out"
mkdir -p "$out/leaflet/images" "$out/topojson-client" "$out/world-atlas" "$out/htm" "$out/preact" "$out/swagger-ui"

# Leaflet: the minified UMD build (sets window.L), its stylesheet and the images it refers to.
cp node_modules/leaflet/dist/leaflet.js node_modules/leaflet/dist/leaflet.css "$out/leaflet/"
cp node_modules/leaflet/dist/images/*.png "$out/leaflet/images/"
cp node_modules/leaflet/LICENSE "$out/leaflet/LICENSE"

# topojson-client: the minified UMD build (sets window.topojson).
cp node_modules/topojson-client/dist/topojson-client.min.js "$out/topojson-client/"
cp node_modules/topojson-client/LICENSE "$out/topojson-client/LICENSE"

# world-atlas: Natural Earth 1:110m countries as TopoJSON (ids are ISO 3166-1 numeric).
cp node_modules/world-atlas/countries-110m.json "$out/world-atlas/"
cp node_modules/world-atlas/LICENSE "$out/world-atlas/LICENSE"

# htm + Preact in one ES module (htm/preact/standalone bundles a build of Preact 10, MIT:
# Preact's own licence is shipped beside it).
cp node_modules/htm/preact/standalone.module.js "$out/htm/preact-standalone.module.js"
cp node_modules/htm/LICENSE "$out/htm/LICENSE"
cp node_modules/preact/LICENSE "$out/preact/LICENSE"

# Swagger UI for the API reference page (/docs/): the one-file bundle (sets window.SwaggerUIBundle)
# and its stylesheet; the page's own init script is public/docs/init.js (no inline script).
cp node_modules/swagger-ui-dist/swagger-ui-bundle.js node_modules/swagger-ui-dist/swagger-ui.css "$out/swagger-ui/"
cp node_modules/swagger-ui-dist/LICENSE "$out/swagger-ui/LICENSE"
[ -f node_modules/swagger-ui-dist/NOTICE ] && cp node_modules/swagger-ui-dist/NOTICE "$out/swagger-ui/NOTICE"

# What was vendored, for people and for the page-weight report.
{
    echo "# Vendored by dashboards/web/vendor.sh from package-lock.json; do not edit by hand."
    for p in leaflet topojson-client world-atlas htm preact swagger-ui-dist; do
        printf '%s %s\n' "$p" "$(node -p "require('./node_modules/$p/package.json').version")"
    done
} > "$out/VERSIONS.txt"

# ISO 3166-1 numeric -> alpha-2 (+ English name), because world-atlas keys countries by the
# numeric code and the boards by alpha-2. Generated from Debian's iso-codes when present;
# otherwise the committed public/countries.json is kept as it is.
iso=/usr/share/iso-codes/json/iso_3166-1.json
if [ -r "$iso" ]; then
    node gen-countries.mjs "$iso" > public/countries.json
else
    echo "vendor.sh: $iso not found (apt-get install iso-codes); keeping public/countries.json" >&2
fi

du -ab "$out" public/countries.json | sort -n | tail -n 20
