#!/usr/bin/env bash
# Builds the mythiq-proxy container image from the Dockerfile without a Docker engine, with podman
# (buildah inside) as root: `npm run image:build` (`npm run image` builds, then runs the image test).
#
# The Dockerfile starts FROM docker.io/library/node:24-bookworm-slim. Where that image cannot be
# pulled (no registry but npm's and Debian's is reachable here), a stand-in of the same name is
# made first and kept in podman's storage for the next build:
#   Debian bookworm minbase (debootstrap, from the Debian mirror apt uses), trimmed as Debian's slim
#   images are (no apt lists, docs, man pages or locales);
#   + /usr/local/bin/node: the Node 24 binary of the `node` devDependency (so `npm ci` first);
#   + npm 11 in /usr/local/lib/node_modules/npm, linked as /usr/local/bin/npm and npx;
#   + the machine's CA bundle ($NODE_EXTRA_CA_CERTS, else npm's cafile, else the system bundle), with
#     NODE_EXTRA_CA_CERTS set to it in the image, so `npm ci` inside the build reaches the registry
#     through this network.
# A stand-in is reused while its label (Node version, Debian release, CA bundle, this recipe) still
# matches; a real node:24-bookworm-slim already in podman's storage is used as it is. The minbase
# tree is also kept, as a tarball in $MYTHIQ_IMAGE_CACHE (default ~/.cache/mythiq-proxy-image), for
# up to 30 days, so a Node upgrade does not run debootstrap again.
#
# Environment: MYTHIQ_IMAGE (tag, default localhost/mythiq-proxy:latest), DEBIAN_MIRROR (default:
# read from /etc/apt/sources.list.d/*.sources, *.list or /etc/apt/sources.list).
# Prints the build time and the image size at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE=${MYTHIQ_IMAGE:-localhost/mythiq-proxy:latest}
BASE=docker.io/library/node:24-bookworm-slim
RELEASE=bookworm
# Bump when what goes into the stand-in base changes: the cached one and the minbase tree are remade.
RECIPE=3
CACHE=${MYTHIQ_IMAGE_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/mythiq-proxy-image}
# vfs: the storage driver that works in every sandbox (overlay needs kernel and file system support).
PODMAN=(podman --storage-driver vfs)
STAND_IN_LABEL=io.mythiq-proxy.stand-in
CONTEXT_LABEL=io.mythiq-proxy.context

TEMP_DIRS=()
trap 'rm -rf "${TEMP_DIRS[@]}"' EXIT
log() { printf '[image] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The hash of everything the build reads (the build context as .dockerignore lets it through, and
# the Dockerfile), stored as a label on the image: the image test compares it with the work tree
# so it never tests an image built from other sources.
context_hash() {
  find package.json package-lock.json tsconfig.json tsconfig.build.json Dockerfile .dockerignore src config -type f \
    ! -path '*/node_modules/*' ! -name '*.log' ! -name '.env' ! -name '.env.*' -print0 \
    | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}
if [ "${1:-}" = "--context-hash" ]; then context_hash; exit 0; fi

ensure_tools() {
  local need=()
  command -v podman >/dev/null || need+=(podman)
  command -v buildah >/dev/null || need+=(buildah)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  [ ${#need[@]} -eq 0 ] && return
  [ "$(id -u)" -eq 0 ] || die "needs ${need[*]} (apt-get install ${need[*]}) and root"
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

# The first deb822 or one-line source for the plain release (not -security/-updates).
debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local file uri
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    uri=$(awk -v rel="$RELEASE" '
      /^[[:space:]]*$/ { if (uri != "" && ok) { print uri; exit } uri = ""; ok = 0; next }
      /^URIs:/ { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == rel) ok = 1 }
      END { if (uri != "" && ok) print uri }' "$file" | head -n1)
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  for file in /etc/apt/sources.list.d/*.list /etc/apt/sources.list; do
    [ -f "$file" ] || continue
    uri=$(awk -v rel="$RELEASE" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i + 1) == rel) { print $i; exit } } }' "$file")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  echo "http://deb.debian.org/debian"
}

# A trimmed Debian minbase tree, as a tarball (path in MINBASE), made at most every 30 days.
minbase_tarball() {
  local tarball="$CACHE/$RELEASE-minbase-$RECIPE.tar"
  MINBASE=$tarball
  if [ -s "$tarball" ] && [ -n "$(find "$tarball" -mtime -30)" ]; then log "Debian minbase from $tarball"; return; fi
  mkdir -p "$CACHE"
  local mirror rootfs
  mirror=$(debian_mirror)
  rootfs=$(mktemp -d /var/tmp/mythiq-proxy-minbase.XXXXXX)
  TEMP_DIRS+=("$rootfs")
  chmod 0755 "$rootfs" # the image's / (mktemp makes it 0700, which locks out every user but root)
  log "debootstrap --variant=minbase $RELEASE from $mirror (about 1-3 minutes)"
  debootstrap --variant=minbase --include=ca-certificates "$RELEASE" "$rootfs" "$mirror" >"$CACHE/debootstrap.log" 2>&1 \
    || die "debootstrap failed, see $CACHE/debootstrap.log"
  # What Debian's slim images leave out; a container runtime provides /dev, resolv.conf and hostname.
  rm -rf "${rootfs:?}"/var/cache/apt/archives/*.deb "${rootfs:?}"/var/cache/apt/*.bin "${rootfs:?}"/var/lib/apt/lists/* \
    "${rootfs:?}"/usr/share/man/* "${rootfs:?}"/usr/share/info/* "${rootfs:?}"/usr/share/locale/* \
    "${rootfs:?}"/var/log/*.log "${rootfs:?}"/var/log/apt/* "${rootfs:?}"/dev/* "${rootfs:?}"/etc/resolv.conf "${rootfs:?}"/etc/hostname
  find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete # licences stay
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
  rm -f "$CACHE/$RELEASE"-minbase*.tar
  tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
}

ensure_base() {
  local node=node_modules/node/bin/node
  [ -x "$node" ] || die "$node is missing: run npm ci first"
  local node_version ca="" ca_sum=none key
  node_version=$("$node" --version)
  case "$node_version" in v24.*) ;; *) die "the node devDependency is $node_version, the Dockerfile's base is Node 24" ;; esac
  # The CAs this machine trusts, for npm inside the build: $NODE_EXTRA_CA_CERTS, else npm's cafile,
  # else the system bundle (a local CA added with update-ca-certificates is in it; a fresh Debian
  # tree has only Debian's).
  local candidate
  for candidate in "${NODE_EXTRA_CA_CERTS:-}" "$(npm config get cafile 2>/dev/null || true)" /etc/ssl/certs/ca-certificates.crt; do
    if [ -n "$candidate" ] && [ -f "$candidate" ] && [ -r "$candidate" ]; then ca=$candidate; break; fi
  done
  [ -z "$ca" ] || ca_sum=$(sha256sum "$ca" | cut -c1-16)
  key="recipe=$RECIPE node=$node_version debian=$RELEASE npm=11 ca=$ca_sum"

  if "${PODMAN[@]}" image exists "$BASE"; then
    local have
    have=$("${PODMAN[@]}" image inspect --format "{{ index .Labels \"$STAND_IN_LABEL\" }}" "$BASE")
    if [ "$have" = "$key" ]; then log "stand-in base $BASE is cached ($key)"; return; fi
    if [ -z "$have" ] || [ "$have" = "<no value>" ]; then log "using $BASE as found in podman's storage"; return; fi
    log "stand-in base is out of date ($have), making a new one"
  fi

  local rootfs npm_dir pack
  minbase_tarball
  rootfs=$(mktemp -d /var/tmp/mythiq-proxy-base.XXXXXX)
  TEMP_DIRS+=("$rootfs")
  tar -C "$rootfs" -xf "$MINBASE"
  chmod 0755 "$rootfs"
  install -m 0755 "$node" "$rootfs/usr/local/bin/node"
  npm_dir="$rootfs/usr/local/lib/node_modules/npm"
  mkdir -p "$npm_dir"
  pack=$(mktemp -d /var/tmp/mythiq-proxy-npm.XXXXXX)
  TEMP_DIRS+=("$pack")
  (cd "$pack" && npm pack --silent npm@11 >/dev/null)
  tar -C "$npm_dir" --strip-components=1 -xzf "$pack"/npm-*.tgz
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  local changes=(
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    --change "ENV NODE_VERSION=${node_version#v}"
    --change "CMD [\"node\"]"
    --change "LABEL $STAND_IN_LABEL=\"$key\""
  )
  if [ -n "$ca" ]; then
    install -m 0644 "$ca" "$rootfs/etc/ssl/certs/node-extra-ca-certificates.crt"
    changes+=(--change "ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/node-extra-ca-certificates.crt")
  fi
  log "importing the stand-in $BASE ($key)"
  tar -C "$rootfs" -c . | "${PODMAN[@]}" import "${changes[@]}" - "$BASE" >/dev/null
}

started=$(date +%s)
ensure_tools
ensure_base
base_done=$(date +%s)

context=$(context_hash)
log "podman build -t $IMAGE . (context $context)"
# --layers=false: one commit per stage instead of one per step. vfs copies the whole file system
# for every layer and container, and deletes as slowly, so per-step layers cost more time than
# their cache would save (measured: a fully cached build took longer than this uncached one).
"${PODMAN[@]}" build --pull=never --network host --isolation chroot --layers=false \
  --label "$CONTEXT_LABEL=$context" -t "$IMAGE" . >&2
# The image this tag named before, now untagged: vfs keeps a full copy of its file system.
"${PODMAN[@]}" image prune -f >/dev/null || log "warning: podman image prune failed; old layers stay in podman's storage"
finished=$(date +%s)

size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")
base_size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$BASE")
log "built $IMAGE in $((finished - started)) s (base $((base_done - started)) s, build $((finished - base_done)) s)"
log "size $((size / 1000000)) MB, of which the base $((base_size / 1000000)) MB and the proxy $(((size - base_size) / 1000000)) MB"
