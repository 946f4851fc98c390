//! Faults to inject, per test or by flag: failed requests, dropped watches, compaction, delay.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use crate::status::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 500 InternalError.
    ServerError,
    /// 429 TooManyRequests with `Retry-After: 1`.
    TooManyRequests,
    /// No answer until the client gives up (held for 60 s), like an overloaded server.
    Timeout,
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "500" => Ok(Fault::ServerError),
            "429" => Ok(Fault::TooManyRequests),
            "timeout" => Ok(Fault::Timeout),
            _ => Err(format!("unknown fault {s:?}: expected 500, 429 or timeout")),
        }
    }
}

/// Which requests a fault applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultFilter {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`; any when empty.
    pub verb: Option<String>,
    /// `approval`, `status`; any when `None`.
    pub subresource: Option<String>,
}

#[derive(Default)]
pub struct Faults {
    pending: Mutex<VecDeque<(Fault, FaultFilter)>>,
    delay: Mutex<Duration>,
}

impl Faults {
    /// Fail the next `count` matching API requests with `fault`.
    pub fn fail_next(&self, count: usize, fault: Fault, filter: FaultFilter) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..count {
            p.push_back((fault, filter.clone()));
        }
    }

    /// Delay every API response by `d`.
    pub fn set_delay(&self, d: Duration) {
        *self.delay.lock().unwrap_or_else(|e| e.into_inner()) = d;
    }

    pub fn delay(&self) -> Duration {
        *self.delay.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn clear(&self) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.set_delay(Duration::ZERO);
    }

    /// The fault for a request, if one is pending for it.
    pub fn take(&self, verb: &str, subresource: Option<&str>) -> Option<Fault> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let i = p.iter().position(|(_, f)| {
            f.verb.as_deref().is_none_or(|v| v == verb)
                && f.subresource
                    .as_deref()
                    .is_none_or(|s| Some(s) == subresource)
        })?;
        p.remove(i).map(|(f, _)| f)
    }
}

impl Fault {
    pub async fn apply(self) -> ApiError {
        match self {
            Fault::ServerError => ApiError::internal("injected fault: internal error"),
            Fault::TooManyRequests => ApiError::too_many_requests(1),
            Fault::Timeout => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                ApiError::timeout()
            }
        }
    }
}
