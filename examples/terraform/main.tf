# A client certificate for the Kubernetes API, requested by Terraform and approved by
# csr-warden (policy terraform-client), not by Terraform itself: auto_approve = false.
terraform {
  required_version = ">= 1.5"
  required_providers {
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = ">= 2.20"
    }
    tls = {
      source  = "hashicorp/tls"
      version = ">= 4.0"
    }
  }
}

variable "kubeconfig" {
  description = "kubeconfig of an identity in the group terraform-client allows (terraform)"
  type        = string
  default     = "~/.kube/config"
}

variable "context" {
  description = "kubeconfig context (for the stand-in: terraform)"
  type        = string
  default     = null
}

variable "name" {
  description = "Common name of the certificate: lower case, digits and dashes (terraform-client)"
  type        = string
  default     = "deploy-bot"
}

variable "organization" {
  description = "Organization (group) of the certificate: one terraform-client allows"
  type        = string
  default     = "developers"
}

provider "kubernetes" {
  config_path    = var.kubeconfig
  config_context = var.context
}

resource "tls_private_key" "client" {
  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_cert_request" "client" {
  private_key_pem = tls_private_key.client.private_key_pem
  subject {
    common_name  = var.name
    organization = var.organization
  }
}

resource "kubernetes_certificate_signing_request_v1" "client" {
  metadata {
    generate_name = "${var.name}-"
  }
  spec {
    request     = tls_cert_request.client.cert_request_pem
    signer_name = "kubernetes.io/kube-apiserver-client"
    usages      = ["client auth", "digital signature", "key encipherment"]
  }
  # The cluster decides: csr-warden's approver approves what policy allows, and its webhook
  # refuses the rest at create, with the reasons.
  auto_approve = false
}

output "certificate" {
  description = "The issued client certificate (PEM)"
  value       = kubernetes_certificate_signing_request_v1.client.certificate
}

output "private_key" {
  value     = tls_private_key.client.private_key_pem
  sensitive = true
}
