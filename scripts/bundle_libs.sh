#!/usr/bin/env bash
# Packs what the GPU check needs into one folder that can travel to a GPU machine without this machine's
# packages: the gpu-labelled test binaries and the benchmark binaries, the shared libraries they link from
# outside the CUDA toolkit and the C/C++ runtime, and scripts/gpu_check.sh.
# Usage: scripts/bundle_libs.sh BUILD_DIR DEST_DIR [ARCHIVE]
#   ARCHIVE: also pack DEST_DIR into this .tar.xz (about a fifth of the folder's size; BLAS and ICU data dominate),
#   for a GPU machine the bundle must be copied to; unpack there with `tar xJf ARCHIVE -C DIR`.
# Layout: DEST_DIR/bin/tests/*, DEST_DIR/bin/bench/*, DEST_DIR/bin/nanoflow, DEST_DIR/lib/*.so*,
#         DEST_DIR/scripts/gpu_check.sh, DEST_DIR/scripts/reference/*.py
set -euo pipefail
build=${1:?usage: bundle_libs.sh BUILD_DIR DEST_DIR}
dest=${2:?usage: bundle_libs.sh BUILD_DIR DEST_DIR}
root="$(cd "$(dirname "$0")/.." && pwd)"
rm -rf "$dest"
mkdir -p "$dest/bin/tests" "$dest/bin/bench" "$dest/lib" "$dest/scripts"

# The executables of every test carrying the gpu label, as ctest knows them.
mapfile -t tests < <(ctest --test-dir "$build" -L gpu --show-only=json-v1 |
  python3 -c 'import json,sys; print("\n".join(sorted({t["command"][0] for t in json.load(sys.stdin)["tests"] if t.get("command")})))')
for t in "${tests[@]}"; do cp "$t" "$dest/bin/tests/"; done
[ -x "$build/nanoflow" ] && cp "$build/nanoflow" "$dest/bin/"
find "$build/bench" -maxdepth 3 -type f -name 'bench_*' -perm -u+x -exec cp {} "$dest/bin/bench/" \; 2>/dev/null || true

# Shared libraries from outside the CUDA toolkit and the base C/C++ runtime (present on any Linux with CUDA).
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libstdc\+\+\.|libgcc_s\.|libcuda\.|libcudart\.|libcublas|libcublasLt\.|libnccl|libcudnn)'
for bin in "$dest"/bin/tests/* "$dest"/bin/bench/* "$dest"/bin/nanoflow; do
  [ -f "$bin" ] || continue
  ldd "$bin" | awk '/=> \//{print $1" "$3}' | while read -r name path; do
    if [[ ! $name =~ $skip ]] && [[ $path != /usr/local/cuda* ]]; then cp -L "$path" "$dest/lib/$name"; fi
  done
done
cp "$root/scripts/gpu_check.sh" "$dest/scripts/"
mkdir -p "$dest/scripts/reference"
cp "$root"/scripts/reference/*.py "$dest/scripts/reference/"
if [ -n "${3:-}" ]; then
  tar cf - -C "$dest" . | xz -T0 -6 > "$3"
  echo "packed into $3 ($(du -h "$3" | cut -f1))"
fi
echo "bundled into $dest:"
(cd "$dest" && find . -type f | sort && du -sh .)
