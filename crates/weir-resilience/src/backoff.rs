//! Delays between retries: exponential from a minimum, capped, optionally jittered.

use crate::error::ConfigError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long to wait before each retry.
///
/// The delay before retry `n` (from 1) is `min × factorⁿ⁻¹`, capped at `max`. With jitter on, each
/// delay is drawn uniformly from `[min, that delay]`, so it never leaves `[min, max]`.
///
/// Defaults: `min` 100 ms, `factor` 2, `max` 30 s, jitter on.
///
/// ```
/// use std::time::Duration;
/// use weir_resilience::Backoff;
///
/// let backoff = Backoff::exponential(Duration::from_millis(100))
///     .factor(2.0)
///     .max_delay(Duration::from_millis(500))
///     .jitter(false);
/// let delays: Vec<u64> = backoff.delays().take(5).map(|d| d.as_millis() as u64).collect();
/// assert_eq!(delays, [100, 200, 400, 500, 500]);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backoff {
    #[serde(with = "crate::human")]
    min: Duration,
    #[serde(with = "crate::human")]
    max: Duration,
    factor: f64,
    jitter: bool,
}

const DEFAULT_MAX: Duration = Duration::from_secs(30);

impl Default for Backoff {
    fn default() -> Self {
        Backoff::exponential(Duration::from_millis(100))
    }
}

impl Backoff {
    /// Exponential backoff starting at `min`: factor 2, capped at 30 s (or at `min` if that is
    /// longer), jitter on.
    pub fn exponential(min: Duration) -> Self {
        Backoff {
            min,
            max: DEFAULT_MAX.max(min),
            factor: 2.0,
            jitter: true,
        }
    }

    /// The same delay before every retry (no jitter).
    pub fn constant(delay: Duration) -> Self {
        Backoff {
            min: delay,
            max: delay,
            factor: 1.0,
            jitter: false,
        }
    }

    /// No delay between retries.
    pub fn none() -> Self {
        Backoff::constant(Duration::ZERO)
    }

    /// Growth factor between consecutive delays; must be at least 1.
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// The cap: no delay is longer than this. Must not be shorter than the minimum delay.
    pub fn max_delay(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// Draw each delay uniformly from `[min, computed delay]` instead of using it as is.
    pub fn jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    /// The minimum (first) delay.
    pub fn min_delay(&self) -> Duration {
        self.min
    }

    /// The cap.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Checks factor ≥ 1 (and finite) and min ≤ max.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(self.factor >= 1.0 && self.factor.is_finite()) {
            return Err(ConfigError::invalid(
                "backoff.factor",
                "a finite number of at least 1",
                self.factor,
            ));
        }
        if self.min > self.max {
            return Err(ConfigError::invalid(
                "backoff.min",
                "a minimum delay no longer than `backoff.max`",
                format_args!(
                    "min {} > max {}",
                    humantime::format_duration(self.min),
                    humantime::format_duration(self.max)
                ),
            ));
        }
        Ok(())
    }

    /// The (endless) sequence of delays, one per retry, jittered if jitter is on.
    pub fn delays(&self) -> Delays {
        Delays {
            backoff: self.clone(),
            next_nanos: self.min.as_nanos() as f64,
        }
    }
}

/// Iterator over the delays of a [`Backoff`], from [`Backoff::delays`]. Never ends.
#[derive(Debug, Clone)]
pub struct Delays {
    backoff: Backoff,
    /// The un-jittered delay of the next retry, in nanoseconds (f64 keeps factor maths exact for
    /// round numbers and saturates instead of overflowing).
    next_nanos: f64,
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let b = &self.backoff;
        let max_nanos = b.max.as_nanos() as f64;
        let capped = self.next_nanos.min(max_nanos);
        self.next_nanos = (capped * b.factor).min(max_nanos);
        let base = duration_from_nanos(capped).max(b.min).min(b.max);
        if !b.jitter || base <= b.min {
            return Some(base);
        }
        let span = (base - b.min).as_nanos().min(u64::MAX as u128) as u64;
        Some(b.min + Duration::from_nanos(fastrand::u64(0..=span)))
    }
}

fn duration_from_nanos(nanos: f64) -> Duration {
    let rounded = nanos.round();
    if rounded >= u64::MAX as f64 {
        Duration::from_nanos(u64::MAX)
    } else {
        Duration::from_nanos(rounded.max(0.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn exponential_sequence_is_exact_and_capped() {
        let b = Backoff::exponential(ms(100))
            .factor(3.0)
            .max_delay(ms(1000))
            .jitter(false);
        let got: Vec<_> = b.delays().take(5).collect();
        assert_eq!(got, [ms(100), ms(300), ms(900), ms(1000), ms(1000)]);
    }

    #[test]
    fn fractional_factor_rounds_to_nanoseconds() {
        let b = Backoff::exponential(ms(100)).factor(1.5).jitter(false);
        let got: Vec<_> = b.delays().take(3).collect();
        assert_eq!(got, [ms(100), ms(150), ms(225)]);
    }

    #[test]
    fn jitter_stays_inside_min_and_cap() {
        let b = Backoff::exponential(ms(10)).max_delay(ms(200)).jitter(true);
        let mut seen_below_base = false;
        for _ in 0..200 {
            for (i, d) in b.delays().take(8).enumerate() {
                assert!(
                    d >= ms(10) && d <= ms(200),
                    "delay {d:?} outside [10ms, 200ms]"
                );
                let base = ms(10 * (1 << i)).min(ms(200));
                assert!(d <= base, "jittered {d:?} above the un-jittered {base:?}");
                seen_below_base |= d < base;
            }
        }
        assert!(seen_below_base, "jitter never changed a delay");
    }

    #[test]
    fn huge_factor_saturates_at_the_cap() {
        let b = Backoff::exponential(ms(1))
            .factor(1e300)
            .max_delay(Duration::from_secs(5))
            .jitter(false);
        let got: Vec<_> = b.delays().take(4).collect();
        assert_eq!(got[1..], [Duration::from_secs(5); 3]);
    }

    #[test]
    fn validation_names_the_key() {
        let err = Backoff::default().factor(0.5).validate().unwrap_err();
        assert!(err.to_string().contains("backoff.factor"), "{err}");
        let err = Backoff::exponential(ms(500))
            .max_delay(ms(100))
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("backoff.min"), "{err}");
        assert!(Backoff::default().factor(f64::NAN).validate().is_err());
    }
}
