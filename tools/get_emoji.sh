#!/bin/sh
# get_emoji.sh: the training data of the shipped default models (weights/emoji/).
#
#   tools/get_emoji.sh [--google] [OUT]      (default OUT: data/emoji64.safetensors)
#
# Downloads the Twemoji images and their names with `npm pack emoji-datasource-twitter@16.0.0`
# (and emoji-datasource-google@16.0.0 with --google) into data/npm/, checks each tarball's
# sha256, unpacks it, and packs the images and captions into one file with build/emoji_dataset
# (see tools/emoji_dataset.c for the captions and the train/validation split). Prints the
# file's sha256 and compares it with the one recorded below for the default (twitter-only) file.
#
# Licences: the Twemoji graphics are (c) Twitter, Inc and other contributors, CC-BY 4.0
# (https://creativecommons.org/licenses/by/4.0/); Noto Emoji (google) is Apache-2.0;
# emoji-datasource itself (the names) is MIT. See weights/README.md.
set -eu
VERSION=16.0.0
SHA_TWITTER=f64a530c63bca463bd8317fdc4615ce63a53a0c65018e4ce2d848aaba7a28877
SHA_GOOGLE=fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438
SHA_OUT_TWITTER=ff468755bc05de434856f8ec332a03ebeee834d40405ff0e862b1c9cd7c829b5

google=0
if [ "${1:-}" = "--google" ]; then google=1; shift; fi
out=${1:-data/emoji64.safetensors}
here=$(pwd)
command -v npm >/dev/null || { echo "get_emoji.sh: npm is needed (apt-get install npm)" >&2; exit 1; }
make -s build/emoji_dataset

fetch() {   # fetch VENDOR SHA256 -> data/npm/VENDOR/package
    tgz=emoji-datasource-$1-$VERSION.tgz
    mkdir -p data/npm
    if [ ! -f "data/npm/$tgz" ]; then
        (cd data/npm && npm pack "emoji-datasource-$1@$VERSION" --silent >/dev/null)
    fi
    got=$(sha256sum "data/npm/$tgz" | cut -d' ' -f1)
    if [ "$got" != "$2" ]; then
        echo "get_emoji.sh: data/npm/$tgz has sha256 $got, expected $2 (a changed package; delete it to retry)" >&2
        exit 1
    fi
    rm -rf "data/npm/$1"
    mkdir -p "data/npm/$1"
    tar -xzf "data/npm/$tgz" -C "data/npm/$1"
}

fetch twitter $SHA_TWITTER
set -- --package data/npm/twitter/package=twitter
if [ $google = 1 ]; then
    fetch google $SHA_GOOGLE
    set -- "$@" --package data/npm/google/package=google
fi
mkdir -p "$(dirname "$out")"
cd "$here"
build/emoji_dataset "$@" --out "$out"
sum=$(sha256sum "$out" | cut -d' ' -f1)
echo "sha256 $sum  $out"
if [ $google = 0 ] && [ "$sum" != "$SHA_OUT_TWITTER" ]; then
    echo "get_emoji.sh: warning: the recorded sha256 of the twitter-only file is $SHA_OUT_TWITTER" >&2
fi
