//! Server-side printing of CSRs (`meta.k8s.io/v1` Table), the columns `kubectl get csr` shows
//! (`pkg/printers/internalversion`: NAME, AGE, SIGNERNAME, REQUESTOR, REQUESTEDDURATION, CONDITION).

use serde_json::{Value, json};

/// Go's `duration.HumanDuration` (`k8s.io/apimachinery/pkg/util/duration`), which kubectl's
/// AGE and REQUESTEDDURATION columns use.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let d = (hours / 24) % 365;
        return if d == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{d}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn age(created: &str) -> String {
    match created.parse::<jiff::Timestamp>() {
        Ok(t) => human_duration(jiff::Timestamp::now().as_second() - t.as_second()),
        Err(_) => "<unknown>".into(),
    }
}

fn duration(seconds: Option<i64>) -> String {
    seconds.map_or("<none>".into(), human_duration)
}

/// The CONDITION column: conditions joined by commas, `Issued` when a certificate is present,
/// `Pending` when nothing is.
pub fn condition(obj: &Value) -> String {
    let mut parts: Vec<String> = obj["status"]["conditions"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["type"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if obj["status"]["certificate"]
        .as_str()
        .is_some_and(|c| !c.is_empty())
    {
        parts.push("Issued".into());
    }
    if parts.is_empty() {
        "Pending".into()
    } else {
        parts.join(",")
    }
}

pub fn csr_table(items: &[Value], list_meta: Option<Value>) -> Value {
    let col = |name: &str, ty: &str, priority: i64| json!({"name": name, "type": ty, "format": if name == "Name" {"name"} else {""}, "description": "", "priority": priority});
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            json!({
                "cells": [
                    o["metadata"]["name"],
                    age(o["metadata"]["creationTimestamp"].as_str().unwrap_or("")),
                    o["spec"]["signerName"],
                    o["spec"]["username"],
                    duration(o["spec"]["expirationSeconds"].as_i64()),
                    condition(o),
                ],
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]},
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta.unwrap_or_else(|| json!({})),
        "columnDefinitions": [
            col("Name", "string", 0),
            col("Age", "date", 0),
            col("SignerName", "string", 0),
            col("Requestor", "string", 0),
            col("RequestedDuration", "string", 0),
            col("Condition", "string", 0),
        ],
        "rows": rows,
    })
}
