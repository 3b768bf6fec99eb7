#!/usr/bin/env bash
# Installs the Debian packages open3d and headless rendering need, only those missing.
# Found with `ldd` on open3d's libOpen3D.so / pybind module (GL, EGL, X11, udev, usb) plus
# what OffscreenRenderer (Vulkan + Mesa llvmpipe) and the legacy Visualizer (xvfb) load.
set -euo pipefail
packages=(
  libusb-1.0-0 libudev1 libgomp1
  libgl1 libglx0 libegl1 libegl-mesa0 libgl1-mesa-dri libx11-6 libxcb1
  libvulkan1 mesa-vulkan-drivers
  xvfb xauth
)
# A fresh Debian Python may lack venv/ensurepip.
if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then packages+=(python3-venv); fi

missing=()
for p in "${packages[@]}"; do
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
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
