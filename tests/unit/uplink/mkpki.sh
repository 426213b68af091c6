#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Test PKI in $1 (EC P-256, 2 days): ca, server (cloud.test, localhost,
# 127.0.0.1), client (sensor-001), a rogue CA with its own server, a
# server certificate for another name. Needs openssl.
set -e
cd "$1"
q() { "$@" >/dev/null 2>&1; }
ca() {
  q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
    -out "$1.crt" -days 2 -subj "/CN=$1 Test CA" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign
}
leaf() { # name ca ext days
  q openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
    -out "$1.csr" -subj "/CN=$1"
  printf '%s\n' "$3" > "$1.ext"
  q openssl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" -CAcreateserial -out "$1.crt" \
    -days "$4" -extfile "$1.ext"
}
ca ca
ca rogue
leaf server ca "subjectAltName=DNS:cloud.test,DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth" 2
leaf client ca "extendedKeyUsage=clientAuth" 2
leaf rogueserver rogue "subjectAltName=DNS:cloud.test,IP:127.0.0.1
extendedKeyUsage=serverAuth" 2
leaf other ca "subjectAltName=DNS:other.test
extendedKeyUsage=serverAuth" 2
# The server's SPKI pin, as curl writes it.
openssl x509 -in server.crt -pubkey -noout | openssl pkey -pubin -outform der |
  openssl dgst -sha256 -binary | base64 > server.pin
