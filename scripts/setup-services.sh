#!/usr/bin/env bash
# Installs the services the test suite runs against for real: PostgreSQL 15 with pgvector
# (built from Debian's trixie source package, since bookworm has none), Redis, Chromium and
# Prometheus (its promtool lints /metrics in a test),
# plus the end-to-end test's npm packages. Idempotent.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

apt_ensure postgresql-15 postgresql-server-dev-15 postgresql-client-15 redis-server chromium prometheus \
  dpkg-dev curl ca-certificates

PG_SHAREDIR="$(/usr/lib/postgresql/15/bin/pg_config --sharedir)"
if [ ! -f "$PG_SHAREDIR/extension/vector.control" ]; then
  log "building pgvector from Debian's source package"
  if ! grep -rqs "trixie" /etc/apt/sources.list.d/kenning-trixie-src.list; then
    echo "deb-src http://deb.debian.org/debian trixie main" > /etc/apt/sources.list.d/kenning-trixie-src.list
    apt-get -o DPkg::Lock::Timeout=900 update -q >/dev/null
  fi
  work="$(mktemp -d)"
  (cd "$work" && apt-get source --download-only pgvector >/dev/null \
    && dpkg-source -x --no-check pgvector_*.dsc src >/dev/null \
    && cd src && make -s PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config >/dev/null \
    && make -s install PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config >/dev/null)
  rm -rf "$work"
fi

want="$(node -p "require('./end2end/package.json').devDependencies['@playwright/test']")"
have="$(node -p "try { require('./end2end/node_modules/@playwright/test/package.json').version } catch { '' }")"
if [ "$want" != "$have" ]; then
  log "installing end-to-end test packages"
  (cd end2end && npm ci --no-audit --no-fund >/dev/null)
fi
