#!/usr/bin/env bash
# Installs the Debian packages open3d and headless rendering need, only those missing.
# Found with `ldd` on open3d's libOpen3D.so / pybind module (GL, EGL, X11, udev, usb) plus
# what OffscreenRenderer (Vulkan + Mesa llvmpipe) and the legacy Visualizer (xvfb) load.
# Optional: colmap, structure from motion for the rebar3d `sfm` mode and its tests (Debian's
# 3.8, built without CUDA: SIFT, matching and mapping run on the CPU). Where it cannot be
# installed the rest still is, and the tests that need it skip, saying why.
set -euo pipefail
packages=(
  libusb-1.0-0 libudev1 libgomp1
  libgl1 libglx0 libegl1 libegl-mesa0 libgl1-mesa-dri libx11-6 libxcb1
  libvulkan1 mesa-vulkan-drivers
  xvfb xauth
)
optional=(colmap)
# A fresh Debian Python may lack venv/ensurepip.
if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then packages+=(python3-venv); fi

missing=()
for p in "${packages[@]}" "${optional[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
echo "system packages: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
required=()
for p in "${missing[@]}"; do
  [[ " ${optional[*]} " == *" $p "* ]] || required+=("$p")
done
if [ ${#required[@]} -gt 0 ]; then
  $sudo apt-get install -y -qq --no-install-recommends "${required[@]}"
fi
for p in "${missing[@]}"; do
  if [[ " ${optional[*]} " == *" $p "* ]]; then
    $sudo apt-get install -y -qq --no-install-recommends "$p" \
      || echo "system packages: WARNING: optional $p could not be installed; the tests that need it will be skipped"
  fi
done
