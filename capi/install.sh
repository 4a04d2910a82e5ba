#!/bin/sh
# Installs poolmalloc for C and C++ programs: the shared and static libraries,
# poolmalloc.h, and pkg-config files for each.
#
#   capi/install.sh [--prefix DIR] [--destdir DIR] [--from DIR]
#
#   --prefix DIR   where the files go, and what the .pc files name (default
#                  /usr/local)
#   --destdir DIR  stage the files under DIR/PREFIX instead (for packagers)
#   --from DIR     install libpoolmalloc.so and libpoolmalloc.a already built
#                  in DIR instead of building them with
#                  `cargo build --release -p poolmalloc-c`
#
# Installed:
#   PREFIX/lib/libpoolmalloc.so, PREFIX/lib/libpoolmalloc.a
#   PREFIX/include/poolmalloc.h
#   PREFIX/lib/pkgconfig/poolmalloc.pc         (links the shared library)
#   PREFIX/lib/pkgconfig/poolmalloc-static.pc  (links the static library,
#                                               whose malloc then replaces
#                                               the C library's)
set -eu

prefix=/usr/local
destdir=
from=
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
        --destdir) destdir=${2:?--destdir needs a directory}; shift 2 ;;
        --from) from=${2:?--from needs a directory}; shift 2 ;;
        -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$prefix" in
    /*) ;;
    *) echo "install.sh: --prefix must be an absolute path, not $prefix" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "$from" ]; then
    cargo build --release -p poolmalloc-c --manifest-path "$root/Cargo.toml"
    from=$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release
fi
for f in libpoolmalloc.so libpoolmalloc.a; do
    if [ ! -f "$from/$f" ]; then
        echo "install.sh: $from/$f not found; build it with cargo build --release -p poolmalloc-c" >&2
        exit 1
    fi
done
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n 1)

lib=$destdir$prefix/lib
inc=$destdir$prefix/include
mkdir -p "$lib/pkgconfig" "$inc"
install -m 755 "$from/libpoolmalloc.so" "$lib/libpoolmalloc.so"
install -m 644 "$from/libpoolmalloc.a" "$lib/libpoolmalloc.a"
install -m 644 "$root/capi/include/poolmalloc.h" "$inc/poolmalloc.h"

# The system libraries the Rust standard library in the static archive
# needs (`rustc --print native-static-libs` for this target).
private="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"
pc() {
    cat <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: $1
Description: $2
Version: $version
URL: https://github.com/poolmalloc/poolmalloc
Cflags: -I\${includedir}
Libs: $3
PC
}
pc poolmalloc "poolmalloc, a small-object memory allocator: shared library" \
    "-L\${libdir} -Wl,-rpath,\${libdir} -lpoolmalloc" >"$lib/pkgconfig/poolmalloc.pc"
pc poolmalloc-static "poolmalloc, a small-object memory allocator: static library, replacing the C library's malloc" \
    "\${libdir}/libpoolmalloc.a $private" >"$lib/pkgconfig/poolmalloc-static.pc"
echo "installed poolmalloc $version under $destdir$prefix"
