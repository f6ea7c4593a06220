//! One measured run: how many operations completed in how long, and their
//! latencies.

use std::time::Duration;

/// The outcome of one timed run of one workload against one server.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Operations answered with a 2xx status inside the timed window.
    pub ok: u64,
    /// Operations answered with another status, or not answered.
    pub errors: u64,
    /// The timed window.
    pub elapsed: Duration,
    /// Latency of every operation that succeeded, in microseconds, sorted.
    pub latencies_us: Vec<u32>,
}

impl Run {
    /// Merges the latencies and counts of several workers that ran over the
    /// same window.
    pub fn merge(elapsed: Duration, parts: impl IntoIterator<Item = (u64, Vec<u32>)>) -> Run {
        let mut run = Run {
            elapsed,
            ..Run::default()
        };
        for (errors, lat) in parts {
            run.errors += errors;
            run.latencies_us.extend(lat);
        }
        run.ok = run.latencies_us.len() as u64;
        run.latencies_us.sort_unstable();
        run
    }

    /// Successful operations per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs == 0.0 {
            0.0
        } else {
            self.ok as f64 / secs
        }
    }

    /// The `p` quantile (0..=1) of the latencies, in milliseconds.
    pub fn quantile_ms(&self, p: f64) -> f64 {
        let lat = &self.latencies_us;
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() - 1) as f64 * p).round() as usize;
        f64::from(lat[i.min(lat.len() - 1)]) / 1000.0
    }

    /// One line: rate, p50/p99/p99.9, errors.
    pub fn line(&self) -> String {
        format!(
            "{:>10.1}/s  p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  ({} in {:.1} s, {} errors)",
            self.rate(),
            self.quantile_ms(0.50),
            self.quantile_ms(0.99),
            self.quantile_ms(0.999),
            self.ok,
            self.elapsed.as_secs_f64(),
            self.errors
        )
    }
}

/// Microseconds of `d`, saturating.
pub fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// The median and the extremes of `xs`.
pub fn spread(xs: &[f64]) -> (f64, f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let mid = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    (mid, v[0], v[v.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_rate_and_spread() {
        let run = Run::merge(Duration::from_secs(2), [(1, vec![3000, 1000]), (0, vec![2000, 4000])]);
        assert_eq!(run.ok, 4);
        assert_eq!(run.errors, 1);
        assert_eq!(run.rate(), 2.0);
        assert_eq!(run.quantile_ms(0.0), 1.0);
        assert_eq!(run.quantile_ms(1.0), 4.0);
        assert_eq!(spread(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(spread(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
    }
}
