#!/usr/bin/env bash
# Regenerates the AdmissionReviews in this folder from ../csr/*.yaml, shaped as the API server
# sends them to a validating webhook: CREATE of the CSR (userInfo = the creator, spec.username
# and groups filled), and UPDATE of the approval subresource (object = the CSR with the new
# Approved condition, oldObject = the stored CSR, userInfo = the approver).
#   bash examples/admission/make.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python3 - "$here" <<'PY'
import json, os, sys, uuid
here = sys.argv[1]
csr_dir = os.path.join(here, "..", "csr")

def read_manifest(name):
    # The manifests are flat, one "key: value" per line (make.sh in ../csr writes them).
    spec, meta = {}, {}
    section = None
    for line in open(os.path.join(csr_dir, name + ".yaml")):
        if line.startswith("#") or not line.strip():
            continue
        if not line.startswith(" "):
            section = line.split(":")[0]
            continue
        key, value = line.strip().split(": ", 1)
        target = spec if section == "spec" else meta
        target[key] = json.loads(value) if value[:1] in '["0123456789' else value
    return meta["name"], spec

def gvk():
    return {"group": "certificates.k8s.io", "version": "v1", "kind": "CertificateSigningRequest"}

def gvr():
    return {"group": "certificates.k8s.io", "version": "v1", "resource": "certificatesigningrequests"}

def stored(name, spec, uid):
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name, "uid": uid, "resourceVersion": "4711",
                     "creationTimestamp": "2026-12-04T12:00:00Z"},
        "spec": spec,
        "status": {},
    }

def review(request):
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}

def write(fname, obj):
    with open(os.path.join(here, fname), "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")

def create(manifest):
    name, spec = read_manifest(manifest)
    obj = stored(name, spec, str(uuid.uuid5(uuid.NAMESPACE_URL, "csr/" + name)))
    del obj["metadata"]["resourceVersion"]
    write("create-%s.json" % manifest, review({
        "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, "create/" + name)),
        "kind": gvk(), "resource": gvr(), "requestKind": gvk(), "requestResource": gvr(),
        "name": name, "operation": "CREATE",
        "userInfo": {"username": spec["username"], "uid": "uid-" + spec["username"],
                     "groups": spec["groups"]},
        "object": obj, "oldObject": None, "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
    }))

def approve(manifest, approver, groups):
    name, spec = read_manifest(manifest)
    uid = str(uuid.uuid5(uuid.NAMESPACE_URL, "csr/" + name))
    old = stored(name, spec, uid)
    new = stored(name, spec, uid)
    new["status"] = {"conditions": [{
        "type": "Approved", "status": "True", "reason": "KubectlApprove",
        "message": "This CSR was approved by kubectl certificate approve.",
        "lastUpdateTime": "2026-12-04T12:01:00Z"}]}
    write("approve-%s.json" % manifest, review({
        "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, "approve/" + name)),
        "kind": gvk(), "resource": gvr(), "subResource": "approval",
        "requestKind": gvk(), "requestResource": gvr(), "requestSubResource": "approval",
        "name": name, "operation": "UPDATE",
        "userInfo": {"username": approver, "groups": groups},
        "object": new, "oldObject": old, "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions"},
    }))

for m in ["terraform-alice", "terraform-admin", "kubelet-worker-1", "kubelet-steals-worker-2",
          "spiffe-payments-api", "spiffe-no-expiration"]:
    create(m)
admin = ["kubeadm:cluster-admins", "system:authenticated"]
approve("terraform-admin", "kubernetes-admin", admin)
approve("terraform-alice", "kubernetes-admin", admin)
PY
echo "wrote AdmissionReviews to $here"
