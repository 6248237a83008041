#!/usr/bin/env bash
# Installs the Debian packages alm needs (speech synthesizers, real recordings, text sources, sox, ffmpeg),
# only those missing. MBROLA, pico and RHVoice live in Debian's contrib/non-free components, which a fresh
# machine does not enable: as root this script enables them. Without root it names the command to run.
set -euo pipefail

PACKAGES=(
  espeak-ng sox libsox-fmt-all ffmpeg flite codec2
  g++ python3-dev  # DeepSpeed compiles its small CPU communication op on first use
  mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 mbrola-es1 mbrola-es2 mbrola-mx1 mbrola-mx2 mbrola-vz1
  libttspico-utils rhvoice rhvoice-english
  asterisk-core-sounds-en asterisk-core-sounds-en-wav asterisk-core-sounds-es asterisk-core-sounds-es-wav
  fortunes fortunes-es
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

enable_components='sed -i "s/^Components: main$/Components: main contrib non-free/" /etc/apt/sources.list.d/debian.sources'
if [ "$(id -u)" -ne 0 ]; then
  echo "alm needs these Debian packages: ${missing[*]}" >&2
  echo "Run as root (mbrola, pico and RHVoice need the contrib and non-free components):" >&2
  echo "  sudo sh -c '$enable_components; apt-get update && apt-get install -y ${missing[*]}'" >&2
  exit 1
fi

echo "Installing Debian packages: ${missing[*]}"
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  sed -i 's/^Components: main$/Components: main contrib non-free/' /etc/apt/sources.list.d/debian.sources
fi
if [ -f /etc/apt/sources.list ]; then
  sed -i -E 's/^(deb .* main)$/\1 contrib non-free/' /etc/apt/sources.list
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "Debian packages installed."
