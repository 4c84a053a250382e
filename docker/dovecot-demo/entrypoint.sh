#!/bin/sh
# Starts the compose demo's Dovecot:
#
# 1. makes a throw-away CA and a server certificate for the names the bridge may use
#    ("dovecot", the compose service; "localhost"), keeps the key in private/ and publishes
#    only the CA certificate in certs/, the volume the bridge mounts to verify Dovecot with;
# 2. seeds the demo user's INBOX from conf/seed/*.eml on the first start (a marker in the mail
#    volume remembers it, so changes made through the bridge survive a restart);
# 3. runs Dovecot in the foreground.
#
# Layout below $IMAP_DEMO_ROOT (default /srv/imap-demo): conf/ (dovecot.conf, users, seed/,
# this script), certs/ (ca.pem), private/ (server.pem, server.key), mail/<user>/Maildir,
# run/ and state/ (Dovecot's own). IMAP_DEMO_ROOT and IMAP_DEMO_MAIL_OWNER (default vmail)
# let tests/deploy.rs run this very script outside a container.
set -eu

root=${IMAP_DEMO_ROOT:-/srv/imap-demo}
owner=${IMAP_DEMO_MAIL_OWNER:-vmail}
seed_user=demo

make_certificates() {
    work=$(mktemp -d)
    cat >"$work/server.ext" <<'EXT'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:dovecot, DNS:localhost, IP:127.0.0.1
EXT
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$work/ca.key" -out "$work/ca.pem" -days 365 \
        -subj "/CN=imap-bridge demo CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$work/server.key" -out "$work/server.csr" -subj "/CN=dovecot"
    openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
        -CAcreateserial -days 365 -extfile "$work/server.ext" -out "$work/server.pem"
    install -d -m 0700 "$root/private"
    install -m 0600 "$work/server.key" "$root/private/server.key"
    install -m 0644 "$work/server.pem" "$root/private/server.pem"
    install -d -m 0755 "$root/certs"
    install -m 0644 "$work/ca.pem" "$root/certs/ca.pem"
    # The CA key goes with the temporary directory: nothing can sign another certificate.
    rm -rf "$work"
    echo "imap-demo: made a CA ($root/certs/ca.pem) and a certificate for dovecot, localhost"
}

seed_mail() {
    maildir=$root/mail/$seed_user/Maildir
    marker=$root/mail/.seeded-$seed_user
    [ -e "$marker" ] && return
    mkdir -p "$maildir/cur" "$maildir/new" "$maildir/tmp"
    count=$(find "$root/conf/seed" -name '*.eml' | wc -l)
    now=$(date +%s)
    n=0
    # One hour apart in file-name order: Dovecot gives UIDs and INTERNALDATE in that order.
    for message in "$root"/conf/seed/*.eml; do
        n=$((n + 1))
        arrived=$((now - (count - n) * 3600))
        name="$arrived.M${n}P$$.imap-demo"
        cp "$message" "$maildir/tmp/$name"
        touch -d "@$arrived" "$maildir/tmp/$name"
        mv "$maildir/tmp/$name" "$maildir/new/$name"
    done
    chown -R "$owner:$owner" "$root/mail"
    touch "$marker"
    echo "imap-demo: seeded $count messages into $seed_user's INBOX"
}

if [ ! -s "$root/private/server.key" ] || [ ! -s "$root/certs/ca.pem" ]; then
    make_certificates
fi
mkdir -p "$root/mail" "$root/run" "$root/state"
chmod 0755 "$root/mail"
seed_mail
exec dovecot -F -c "$root/conf/dovecot.conf"
