#!/bin/sh
# One-shot setup for compose.yaml (development only): a federation PKI made by
# `renkei certs init`, and the example configurations from deploy/examples/ with the
# placeholder public keys replaced by the generated ones, so that a bulletin really
# flows from one example desk to another. (`renkei partner add`, to come, will do the
# key exchange properly.)
#
# It runs in the `setup` service with deploy/examples mounted read-only at $EXAMPLES
# and a volume at $ETC; the hub and the desks mount that volume read-only at
# /etc/renkei. Running it again keeps the PKI it made the first time.
set -eu

RENKEI=${RENKEI:-/usr/local/bin/renkei}
EXAMPLES=${EXAMPLES:-/usr/local/share/renkei/examples}
ETC=${ETC:-/etc/renkei}
# Every partner id the examples name: the hub, its partners and the desks.
IDS=jp-mod,fr-mod,vn-mod,nato-ccdcoe,jp-audit

if [ ! -f "$ETC/certs/ca.crt" ]; then
    "$RENKEI" certs init --dir "$ETC/certs" --nodes "$IDS"
fi

# Each example key stands for one partner's key in every file (see node.toml).
swap() { # EXAMPLE-KEY ID FILE
    sed -i "s|$1|$(cat "$ETC/certs/$2/signing.pub")|g" "$3"
}
for example in "$EXAMPLES"/*.toml; do
    out="$ETC/$(basename "$example")"
    cp "$example" "$out.tmp"
    swap 'ed25519:YK2wgah4XchJv1R2ib26pFr3o8eSH5Rq9GBGp6udytM=' fr-mod "$out.tmp"
    swap 'ed25519:5e+gqADwGFQVp/AxAFrLX7PVe3gpkMg64HoP6FZpCa8=' vn-mod "$out.tmp"
    swap 'ed25519:HiT6OQCnzF9qN88yniw20ZQOyuYwNLICXa7WWmLzilY=' nato-ccdcoe "$out.tmp"
    chmod 0644 "$out.tmp"
    mv "$out.tmp" "$out"
    echo "wrote $out"
done
