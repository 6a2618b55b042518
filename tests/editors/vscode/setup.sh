#!/usr/bin/env bash
# Installs what run.mjs needs: Chromium, code-server (from npm, into a cache
# directory), puppeteer-core and the extension's build tools. Idempotent, so
# CI can call it before every run of the slow tests.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
cache=${TRACEFIX_EDITOR_CACHE:-/tmp/tracefix-editors}
code_server_version=4.100.3 # VS Code 1.100; the last line of releases that runs on node 20

export npm_config_yes=true npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false

# Chromium for puppeteer; ripgrep, a compiler and headers for code-server's
# own dependencies (search, native modules built on install).
packages=(chromium ripgrep build-essential python3 libkrb5-dev libxkbfile-dev libsecret-1-dev libx11-dev)
if command -v dpkg-query >/dev/null; then
  missing=()
  for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
  done
  if ((${#missing[@]})); then
    if [[ $(id -u) != 0 ]]; then
      echo "setup.sh: missing Debian packages, install them as root: ${missing[*]}" >&2
      exit 1
    fi
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi

code_server="$cache/code-server/node_modules/.bin/code-server"
if [[ ! -x $code_server ]] || ! "$code_server" --version 2>/dev/null | grep -q "^$code_server_version "; then
  # @vscode/ripgrep's postinstall downloads rg from GitHub, which CI cannot
  # reach; it takes a tarball from this cache directory instead.
  # The versions code-server 4.100.3's @vscode/ripgrep asks for.
  rg_version=1.15.11 rg_release=v13.0.0-10
  case $(uname -m) in
    x86_64) rg_target=x86_64-unknown-linux-musl ;;
    aarch64) rg_target=aarch64-unknown-linux-musl ;;
    *) echo "setup.sh: no ripgrep mapping for $(uname -m)" >&2; exit 1 ;;
  esac
  rg_cache="${TMPDIR:-/tmp}/vscode-ripgrep-cache-$rg_version"
  mkdir -p "$rg_cache"
  tar -C "$(dirname "$(command -v rg)")" -czf "$rg_cache/ripgrep-$rg_release-$rg_target.tar.gz" rg

  rm -rf "$cache/code-server"
  mkdir -p "$cache/code-server"
  # code-server builds its native modules in install scripts, which npm >= 11.x
  # skips for dependencies unless allowed; its postinstall refuses to run as
  # root without unsafe_perm.
  npm_config_dangerously_allow_all_scripts=true npm_config_unsafe_perm=true \
    npm install --prefix "$cache/code-server" --no-save "code-server@$code_server_version"
fi

(cd "$here" && npm ci)
(cd "$repo/editors/vscode" && npm ci)
