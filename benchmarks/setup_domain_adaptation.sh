#!/usr/bin/env bash
# Setup of benchmarks/domain_adaptation.py (idempotent):
#  1. the Debian dictionary its splits come from (dict-vera by default: computing acronyms);
#  2. benchmarks/.venv-peer: the peer's own venv (sentence-transformers' trainer and
#     mine_hard_negatives need `datasets`, which uniembed does not depend on). It sees the
#     repo venv's packages through a .pth file, so both sides run the same torch,
#     transformers and sentence-transformers.
set -euo pipefail
cd "$(dirname "$0")/.."
DICT="${1:-vera}"
if [ ! -f "/usr/share/dictd/${DICT}.index" ]; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "dict-${DICT}" >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "dict-${DICT}"; }
  else
    echo "install the dictionary first: sudo apt-get install dict-${DICT}" >&2
    exit 1
  fi
fi
PEER=benchmarks/.venv-peer
if [ ! -x "$PEER/bin/python" ]; then
  .venv/bin/python -m venv "$PEER"
  SHARED=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  OWN=$("$PEER/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  echo "$SHARED" > "$OWN/uniembed-shared.pth"
fi
"$PEER/bin/python" -c "import datasets" 2>/dev/null || "$PEER/bin/pip" install -q "datasets>=3"
echo "dictionary /usr/share/dictd/${DICT}.index; peer venv $PEER"
