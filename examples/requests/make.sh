#!/usr/bin/env bash
# Regenerates the example and test requests in this folder with OpenSSL 3.
# Keys are made in a temporary folder and thrown away; only the requests are kept.
#   bash examples/requests/make.sh
set -euo pipefail
out=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

key() { # key NAME ARGS... : a throwaway private key
  local name=$1; shift
  openssl genpkey -quiet "$@" -out "$name.key"
}
req() { # req FILE KEY SUBJECT [extra openssl req args...]
  local file=$1 k=$2 subj=$3; shift 3
  openssl req -new -key "$k.key" -subj "$subj" -out "$out/$file" "$@"
}

key rsa2048 -algorithm RSA -pkeyopt rsa_keygen_bits:2048
key rsa1024 -algorithm RSA -pkeyopt rsa_keygen_bits:1024
key rsa4096 -algorithm RSA -pkeyopt rsa_keygen_bits:4096
key p224 -algorithm EC -pkeyopt ec_paramgen_curve:P-224
key p256 -algorithm EC -pkeyopt ec_paramgen_curve:P-256
key p384 -algorithm EC -pkeyopt ec_paramgen_curve:P-384
key p521 -algorithm EC -pkeyopt ec_paramgen_curve:P-521
key ed25519 -algorithm ED25519
key rsapss -algorithm RSA-PSS -pkeyopt rsa_keygen_bits:2048
openssl dsaparam -out dsa.params 2048 2>/dev/null
openssl gendsa -out dsa.key dsa.params 2>/dev/null

# One request per key type the API server accepts (terraform-client shaped: CN=alice, O=developers).
req rsa-2048.pem rsa2048 "/CN=alice/O=developers" -sha256
req rsa-1024.pem rsa1024 "/CN=alice/O=developers" -sha256
req rsa-4096-sha512.pem rsa4096 "/CN=alice/O=developers" -sha512
req rsa-pss-sha256.pem rsa2048 "/CN=alice/O=developers" -sha256 \
  -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest -sigopt rsa_mgf1_md:sha256
req rsa-pss-sha384.pem rsa2048 "/CN=alice/O=developers" -sha384 \
  -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest -sigopt rsa_mgf1_md:sha384
req rsa-pss-salt-20.pem rsa2048 "/CN=alice/O=developers" -sha256 \
  -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:20
req rsa-sha1.pem rsa2048 "/CN=alice/O=developers" -sha1
req p224.pem p224 "/CN=alice/O=developers" -sha256
req p256.pem p256 "/CN=alice/O=developers" -sha256
req p384.pem p384 "/CN=alice/O=developers" -sha384
req p521.pem p521 "/CN=alice/O=developers" -sha512
req p521-sha256.pem p521 "/CN=alice/O=developers" -sha256
req ecdsa-sha1.pem p256 "/CN=alice/O=developers" -sha1
req ed25519.pem ed25519 "/CN=alice/O=developers"
req rsa-pss-key.pem rsapss "/CN=alice/O=developers"
req dsa.pem dsa "/CN=alice/O=developers" -sha256

# Tampered: the last byte of the signature of p256.pem flipped.
openssl req -in "$out/p256.pem" -outform DER -out p256.der
python3 - p256.der "$out/tampered.pem" <<'PY'
import base64, sys
der = bytearray(open(sys.argv[1], 'rb').read())
der[-1] ^= 0x01
b64 = base64.b64encode(bytes(der)).decode()
lines = [b64[i:i+64] for i in range(0, len(b64), 64)]
open(sys.argv[2], 'w').write("-----BEGIN CERTIFICATE REQUEST-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE REQUEST-----\n")
PY

# Subject shapes.
req duplicate-cn.pem p256 "/CN=alice/CN=admin/O=developers"
req admin-group.pem p256 "/CN=alice/O=system:masters"
req kubeadm-admins.pem p256 "/CN=alice/O=kubeadm:cluster-admins"
req bad-cn.pem p256 "/CN=Alice Smith/O=developers"
req unknown-org.pem p256 "/CN=alice/O=finance"
req no-org.pem ed25519 "/CN=ci-runner-7"
cat > bmp.cnf <<'CNF'
[req]
distinguished_name = dn
string_mask = MASK:0x800
prompt = no
[dn]
CN = alice
O = developers
CNF
openssl req -new -key p256.key -config bmp.cnf -out "$out/bmpstring.pem"
req ca-request.pem p256 "/CN=alice/O=developers" -addext "basicConstraints=critical,CA:TRUE"
req client-with-san.pem p256 "/CN=alice/O=developers" -addext "subjectAltName=DNS:alice.example.com"
req wildcard-cn.pem p256 "/CN=*.example.com/O=developers"

# kubelet serving requests for node worker-1.
req kubelet-worker-1.pem p256 "/O=system:nodes/CN=system:node:worker-1" \
  -addext "subjectAltName=DNS:worker-1,DNS:worker-1.cluster.local,IP:10.0.0.5,IP:fd00::5"
req kubelet-worker-1-rsa.pem rsa2048 "/O=system:nodes/CN=system:node:worker-1" \
  -addext "subjectAltName=DNS:worker-1,IP:192.168.1.20"
req kubelet-other-node-dns.pem p256 "/O=system:nodes/CN=system:node:worker-1" \
  -addext "subjectAltName=DNS:worker-2,IP:10.0.0.5"
req kubelet-public-ip.pem p256 "/O=system:nodes/CN=system:node:worker-1" \
  -addext "subjectAltName=DNS:worker-1,IP:8.8.8.8"
req kubelet-no-san.pem p256 "/O=system:nodes/CN=system:node:worker-1"
req kubelet-wrong-org.pem p256 "/O=developers/CN=system:node:worker-1" -addext "subjectAltName=DNS:worker-1"
req kubelet-email-san.pem p256 "/O=system:nodes/CN=system:node:worker-1" \
  -addext "subjectAltName=DNS:worker-1,email:root@worker-1"
req kubelet-wildcard.pem p256 "/O=system:nodes/CN=system:node:worker-1" \
  -addext "subjectAltName=DNS:*.worker-1.cluster.local"
req kubelet-dotted-node.pem p256 "/O=system:nodes/CN=system:node:node.1" \
  -addext "subjectAltName=DNS:node.1"
req kubelet-dot-wildcard.pem p256 "/O=system:nodes/CN=system:node:node.1" \
  -addext "subjectAltName=DNS:nodex1"
req kubelet-p521.pem p521 "/O=system:nodes/CN=system:node:worker-1" \
  -addext "subjectAltName=DNS:worker-1" -sha512

# SPIFFE workload for service account payments/api.
req spiffe-api.pem p256 "/CN=api" -addext "subjectAltName=URI:spiffe://cluster.local/ns/payments/sa/api"
req spiffe-rsa-1024.pem rsa1024 "/CN=api" -sha256 -addext "subjectAltName=URI:spiffe://cluster.local/ns/payments/sa/api"
req spiffe-no-cn.pem ed25519 "/" -addext "subjectAltName=URI:spiffe://cluster.local/ns/payments/sa/api"
req spiffe-other-sa.pem p256 "/CN=api" -addext "subjectAltName=URI:spiffe://cluster.local/ns/payments/sa/admin"
req spiffe-extra-dns.pem p256 "/CN=api" \
  -addext "subjectAltName=URI:spiffe://cluster.local/ns/payments/sa/api,DNS:api.payments.svc"

# Every SAN type, for the facts tests.
req all-sans.pem p256 "/CN=alice" \
  -addext "subjectAltName=DNS:a.example.com,IP:192.0.2.1,IP:2001:db8::1,email:a@example.com,URI:https://a.example.com/x,otherName:1.3.6.1.4.1.311.20.2.3;UTF8:a@corp.example,RID:1.2.3.4,dirName:dir_sect" \
  -addext "keyUsage=digitalSignature,keyEncipherment" -addext "extendedKeyUsage=clientAuth,1.2.3.5" \
  -addext "1.2.3.6=critical,ASN1:UTF8String:custom" \
  -config <(cat /usr/lib/ssl/openssl.cnf; printf '[dir_sect]\nCN=dir\n')

# 2,000 DNS SANs: over the SAN limit.
sans=$(python3 -c 'print(",".join("DNS:host-%04d.example.com" % i for i in range(2000)))')
req many-sans.pem p256 "/CN=alice/O=developers" -addext "subjectAltName=$sans"

# Not a request at all.
printf 'this is not a certificate request\n\x00\x01\x02' > "$out/garbage.pem"
echo "wrote requests to $out"
