#!/usr/bin/env bash
# Regenerates the CertificateSigningRequest manifests in this folder from ../requests/*.pem.
# spec.username/groups are what the API server would record for the creator.
#   bash examples/csr/make.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python3 - "$here" <<'PY'
import base64, json, sys, os
here = sys.argv[1]
req = os.path.join(here, "..", "requests")
def manifest(name, pem, signer, user, groups, usages, expiration=None):
    spec = {
        "request": base64.b64encode(open(os.path.join(req, pem), "rb").read()).decode(),
        "signerName": signer,
        "usages": usages,
        "username": user,
        "groups": groups,
    }
    if expiration:
        spec["expirationSeconds"] = expiration
    lines = [
        "# Made by make.sh from ../requests/%s" % pem,
        "apiVersion: certificates.k8s.io/v1",
        "kind: CertificateSigningRequest",
        "metadata:",
        "  name: %s" % name,
        "spec:",
        "  request: %s" % spec["request"],
        "  signerName: %s" % signer,
        "  usages: %s" % json.dumps(usages),
        "  username: %s" % json.dumps(user),
        "  groups: %s" % json.dumps(groups),
    ]
    if expiration:
        lines.append("  expirationSeconds: %d" % expiration)
    open(os.path.join(here, name + ".yaml"), "w").write("\n".join(lines) + "\n")

client = "kubernetes.io/kube-apiserver-client"
serving = "kubernetes.io/kubelet-serving"
spiffe = "example.com/spiffe"
tf = ["terraform", "system:authenticated"]
node = ["system:nodes", "system:authenticated"]
sa = ["system:serviceaccounts", "system:serviceaccounts:payments", "system:authenticated"]
manifest("terraform-alice", "rsa-2048.pem", client, "terraform", tf, ["client auth", "digital signature", "key encipherment"])
manifest("terraform-server-auth", "p256.pem", client, "terraform", tf, ["client auth", "server auth"])
manifest("terraform-admin", "admin-group.pem", client, "terraform", tf, ["client auth"])
manifest("terraform-long-lived", "ed25519.pem", client, "terraform", tf, ["client auth"], 90 * 24 * 3600)
manifest("kubelet-worker-1", "kubelet-worker-1.pem", serving, "system:node:worker-1", node, ["digital signature", "server auth"])
manifest("kubelet-steals-worker-2", "kubelet-other-node-dns.pem", serving, "system:node:worker-1", node, ["digital signature", "server auth"])
manifest("kubelet-wildcard", "kubelet-wildcard.pem", serving, "system:node:worker-1", node, ["digital signature", "server auth"])
manifest("spiffe-payments-api", "spiffe-api.pem", spiffe, "system:serviceaccount:payments:api", sa, ["digital signature", "client auth", "server auth"], 3600)
manifest("spiffe-impersonates-admin", "spiffe-other-sa.pem", spiffe, "system:serviceaccount:payments:api", sa, ["digital signature", "client auth"], 3600)
manifest("spiffe-no-expiration", "spiffe-no-cn.pem", spiffe, "system:serviceaccount:payments:api", sa, ["client auth"])
PY
echo "wrote manifests to $here"
