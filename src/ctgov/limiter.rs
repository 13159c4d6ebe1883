//! The one rate limiter every CT.gov request goes through: it spreads request starts evenly
//! over time (`requests_per_minute`) and lets a 429's `Retry-After` pause every task at once,
//! since CT.gov throttles per IP, not per request.
//!
//! Owns only the timing of request starts. Does not own retries, backoff or reading
//! `Retry-After` (that is `ctgov::client`).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Spreads requests evenly over time and lets a 429's `Retry-After` pause everyone.
#[derive(Debug)]
pub(super) struct RateLimiter {
    /// Minimum spacing between request starts; `None` when the limit is off.
    interval: Option<Duration>,
    /// The earliest moment the next request may start.
    next: Mutex<Instant>,
}

impl RateLimiter {
    /// A limiter allowing `requests_per_minute` request starts a minute; 0 turns the limit off.
    pub(super) fn new(requests_per_minute: u32) -> Self {
        RateLimiter {
            interval: (requests_per_minute > 0)
                .then(|| Duration::from_secs(60) / requests_per_minute),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this request's slot. Slots are handed out in call order.
    pub(super) async fn acquire(&self) {
        let now = Instant::now();
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let slot = (*next).max(now);
            if let Some(interval) = self.interval {
                *next = slot + interval;
            }
            slot
        };
        if slot > now {
            tokio::time::sleep_until(slot).await;
        }
    }

    /// No request (of any task) starts before `until`.
    pub(super) fn hold_until(&self, until: Instant) {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        if until > *next {
            *next = until;
        }
    }
}
